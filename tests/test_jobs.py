"""The job engine: Celery configured from Django's settings, jobs published after commit, the
request id carried into tasks, beat's chores, and `make run`'s launcher (with its demo and
webhook receiver)."""

import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from celery import Celery
from django.conf import settings
from django.utils import timezone

from fluxomail import jobs
from fluxomail.middleware import set_request_id
from sends.models import IdempotencyRecord, Send
from sends.tasks import purge_idempotency
from tests.conftest import free_port
from tests.workers import Worker, wait_for
from webhooks import signing
from webhooks.models import Delivery


def idempotency_records(organization, *, expired: int, live: int) -> None:
    now = timezone.now()
    for i in range(expired + live):
        IdempotencyRecord.objects.create(
            organization=organization,
            key=f"k{i}",
            endpoint="send",
            fingerprint="f",
            expires_at=now + (timedelta(hours=-1) if i < expired else timedelta(hours=1)),
        )


def test_purge_idempotency_task_deletes_only_expired_records(alice):
    idempotency_records(alice.organization, expired=2, live=1)

    assert purge_idempotency() == 2

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k2"]


def test_beat_schedules_the_idempotency_purge():
    assert settings.CELERY_BEAT_SCHEDULE["purge-idempotency"] == {
        "task": "sends.purge_idempotency",
        "schedule": 3600.0,
    }


def test_a_job_published_while_the_broker_is_down_is_logged_not_raised(caplog, monkeypatch):
    monkeypatch.setattr(jobs, "_skip_until", 0.0)  # restored afterwards: other tests publish
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery prefers it to `broker`
    down = Celery("down", broker=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    down.conf.update(
        broker_connection_timeout=1,
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_retry=False,
    )

    @down.task(name="tests.nothing")
    def nothing():
        return None

    with caplog.at_level(logging.WARNING, logger="fluxomail.jobs"):
        assert jobs.publish(nothing) is False
        # For a while this process does not try again: one timeout, not one per request.
        assert jobs.publish(nothing) is False

    assert caplog.messages == [
        "could not enqueue tests.nothing (a sweeper will pick the job up): OperationalError"
    ]


# -- a real worker ----------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_job_and_its_log_lines_carry_the_request_id(alice):
    idempotency_records(alice.organization, expired=1, live=1)
    with Worker() as worker:
        set_request_id("req_jobtest42")
        try:
            assert jobs.publish(purge_idempotency)
        finally:
            set_request_id("-")
        wait_for(lambda: IdempotencyRecord.objects.count() == 1, what="purge by the worker")
        wait_for(lambda: "purged 1 expired" in worker.output(), what="the task's log line")
    line = next(x for x in worker.output().splitlines() if "purged 1 expired" in x)
    assert "[req_jobtest42] purged 1 expired idempotency record(s)" in line


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_beat_runs_the_idempotency_purge_on_its_schedule(alice):
    idempotency_records(alice.organization, expired=3, live=2)
    with Worker(beat=True, env={"JOBS_PURGE_SECONDS": "0.5"}):
        wait_for(lambda: IdempotencyRecord.objects.count() == 2, what="purge by beat")


@pytest.mark.rabbitmq
@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_jobs_travel_through_rabbitmq_to_the_worker(alice):
    idempotency_records(alice.organization, expired=1, live=0)
    with Worker() as worker:
        assert jobs.publish(purge_idempotency)
        wait_for(lambda: not IdempotencyRecord.objects.exists(), what="purge by the worker")
    assert "Connected to amqp://" in worker.output()


# -- make run ---------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_make_run_delivers_the_queued_sample_and_signed_webhooks_and_ctrl_c_stops_it_all(
    tmp_path,
):
    """What `make run` runs (migrate, then the launcher), on a database and demo files of its own,
    with nothing but this checkout: the receiver gets every sample's outcome, signed, the queued
    sample is delivered by the worker, and Ctrl-C leaves no process behind."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "PYTEST", "CELERY_", "DJANGO_SETTINGS", "REDIS_"))
    }
    demo = tmp_path / "demo"
    database = tmp_path / "db.sqlite3"
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        JOBS_DIR=str(tmp_path / "jobs"),
        FLUXOMAIL_DEMO_DIR=str(demo),
        FLUXOMAIL_LOG_DIR=str(tmp_path / "log"),
        WEBHOOK_ALLOW_PRIVATE_TARGETS="true",  # as the Makefile's run target sets it
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, capture_output=True, check=True)
    port, webhook_port = free_port(), free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "fluxomail.devserver", f"127.0.0.1:{port}",
             "--webhook-port", str(webhook_port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def text(name: str = "") -> str:
            # The web server writes to the terminal, the worker and beat to FLUXOMAIL_LOG_DIR.
            path = tmp_path / "log" / f"{name}.log" if name else log
            return path.read_text(errors="replace") if path.exists() else ""

        wait_for(lambda: "Fluxomail demo is ready" in text(), limit=120, what="the banner")
        wait_for(lambda: "beat: Starting" in text("beat"), limit=60, what="beat")
        output = text()
        samples = re.findall(r"^sample send (sends_\w+) via (.*)$", output, re.MULTILINE)
        assert len(samples) == 4
        (queued,) = [send_id for send_id, line in samples if line.endswith("delivers it)")]
        # One line per webhook: every sample's email.sent arrived, signed with the secret that
        # bootstrap_demo kept for the receiver, and before the credentials block.
        received = re.findall(
            r"^webhook received: email.sent (evt_\w+) (sends_\w+): signature ok$",
            output,
            re.MULTILINE,
        )
        assert sorted(send_id for _, send_id in received) == sorted(s for s, _ in samples)
        assert output.rindex("webhook received") < output.index("Fluxomail demo is ready")
        assert output.rstrip().endswith("=" * 72)
        assert "signature BAD" not in output
        assert text("webhooks").count(": signature ok") == 4
        with sqlite3.connect(database) as db:
            status = db.execute(
                f"SELECT status FROM {Send._meta.db_table} WHERE public_id = ?", (queued,)
            ).fetchone()
            deliveries = db.execute(
                f"SELECT status, COUNT(*) FROM {Delivery._meta.db_table} GROUP BY status"
            ).fetchall()
        assert status == ("sent",)
        assert deliveries == [("succeeded", 4)]
        assert "Subject: Your order has shipped" in text("worker")  # the console backend

        # The receiver checks as the README says: a body changed after signing is refused.
        state = json.loads((demo / "var" / "demo-webhook.json").read_text())
        body = json.dumps({"id": "evt_x", "type": "email.sent", "data": {"sendId": "sends_x"}})
        headers = signing.headers([state["secret"]], "evt_x", int(time.time()), body.encode())
        url = f"http://127.0.0.1:{webhook_port}/webhooks"
        assert state["url"] == url
        assert _post(url, body.encode(), headers) == 200
        assert _post(url, body.replace("sends_x", "sends_y").encode(), headers) == 400
        wait_for(lambda: "signature BAD" in text(), what="the refused request's line")
        lines = text().splitlines()
        good = lines.index("webhook received: email.sent evt_x sends_x: signature ok")
        bad = "webhook received: email.sent evt_x sends_y: signature BAD (bad Fluxomail-Signature)"
        assert lines[good + 1 :].count(bad) == 1

        children = _descendants(launcher.pid)
        assert len(children) >= 3

        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        assert launcher.wait(30) == 0
        time.sleep(0.2)  # let the kernel reap re-parented children
        assert [pid for pid in children if _alive(pid)] == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", webhook_port), timeout=5)
    finally:
        if launcher.poll() is None:
            launcher.kill()


@pytest.mark.parametrize("args", [(7,), (2**70,), ("not an id",)])
def test_a_published_job_carries_the_headers_celery_writes_itself(args, monkeypatch):
    """jobs.publish names the arguments' repr for Celery (which then skips its own saferepr):
    the message is the one apply_async writes without them."""
    from celery.signals import before_task_publish

    from fluxomail.celery import app

    deliver_queued = app.tasks["sends.deliver_queued"]  # this app's, whichever app is current
    monkeypatch.setattr(jobs, "_skip_until", 0.0)
    published = []

    def keep(headers=None, body=None, **kwargs):
        published.append((dict(headers), body))

    before_task_publish.connect(keep)
    try:
        assert jobs.publish(deliver_queued, *args) is True
        deliver_queued.apply_async(args)
    finally:
        before_task_publish.disconnect(keep)

    (ours, our_body), (celerys, celerys_body) = published
    for name in ("id", "root_id"):  # each message's own
        assert ours.pop(name) != celerys.pop(name)
    assert ours == celerys
    assert our_body == celerys_body
    assert ours["argsrepr"] == repr(args) and ours["kwargsrepr"] == "{}"
