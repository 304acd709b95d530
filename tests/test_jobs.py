"""The job engine: Celery configured from Django's settings, jobs published after commit, the
request id carried into tasks, beat's chores, and `make run`'s launcher."""

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from celery import Celery
from django.conf import settings
from django.utils import timezone

from fluxomail import jobs
from fluxomail.middleware import set_request_id
from sends.models import IdempotencyRecord
from sends.tasks import purge_idempotency
from tests.conftest import free_port
from tests.workers import Worker, wait_for


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


def test_make_run_starts_web_worker_and_beat_and_ctrl_c_stops_them_all(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "PYTEST", "CELERY_", "DJANGO_SETTINGS"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        JOBS_DIR=str(tmp_path / "jobs"),
        FLUXOMAIL_LOG_DIR=str(tmp_path / "log"),
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "fluxomail.devserver", f"127.0.0.1:{port}"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def text(name: str = "") -> str:
            # The web server writes to the terminal, the worker and beat to FLUXOMAIL_LOG_DIR.
            path = tmp_path / "log" / f"{name}.log" if name else log
            return path.read_text(errors="replace") if path.exists() else ""

        wait_for(lambda: " ready." in text("worker"), limit=60, what="the worker")
        wait_for(lambda: "beat: Starting" in text("beat"), limit=60, what="beat")
        wait_for(lambda: f"127.0.0.1:{port}" in text(), limit=60, what="the web server")
        children = _descendants(launcher.pid)
        assert len(children) >= 3

        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        assert launcher.wait(30) == 0
        time.sleep(0.2)  # let the kernel reap re-parented children
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if launcher.poll() is None:
            launcher.kill()
