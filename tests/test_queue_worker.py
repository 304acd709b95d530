"""Queued delivery by real Celery workers on PostgreSQL, through the configured broker
(RabbitMQ in CI), to a real SMTP server: deferral then acceptance, permanent failure, a worker
SIGKILLed mid-delivery, the broker down at commit time, two workers racing one job."""

import pytest

from fluxomail import jobs
from sends.models import IdempotencyRecord, Message, QueuedSend, Send
from sends.tasks import deliver_queued
from tests.conftest import SEED_BODY
from tests.servers import FaultySmtp
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SEND = "/api/v1/emails/send"
FAST = {
    "JOBS_SWEEP_SECONDS": "0.3",
    "DELIVERY_RETRY_BASE_SECONDS": "0.2",
}


@pytest.fixture(autouse=True)
def queue_mode(settings):
    settings.DELIVERY_MODE = "queue"


@pytest.fixture
def smtp():
    with FaultySmtp() as sink:
        yield sink


def post(api, key, idem: str, request_id: str = "req-queue"):
    response = api.post(
        SEND, SEED_BODY, format="json", HTTP_IDEMPOTENCY_KEY=idem, HTTP_X_REQUEST_ID=request_id,
        **key.bearer,
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued"
    return Send.objects.get(public_id=response.json()["sendId"])


def status_of(send: Send) -> str:
    return Send.objects.values_list("status", flat=True).get(pk=send.pk)


def test_a_worker_delivers_a_queued_send_and_logs_under_its_request_id(api, send_key, smtp):
    with Worker(smtp_port=smtp.port) as worker:
        send = post(api, send_key, "qw-1", request_id="req-qw1")
        wait_for(lambda: status_of(send) == "sent", what="the delivery")
        # The worker's log line of that job carries the request's id.
        wait_for(lambda: "[req-qw1] queued send" in worker.output(), what="the log line")
    assert len(smtp.messages) == 1
    replay = api.post(SEND, SEED_BODY, format="json", HTTP_IDEMPOTENCY_KEY="qw-1",
                      **send_key.bearer).json()  # fmt: skip
    assert (replay["status"], replay["reused"]) == ("sent", True)
    assert replay["messageId"] == Message.objects.get().provider_message_id


def test_a_deferral_is_retried_by_the_worker_and_then_accepted(api, send_key, smtp):
    smtp.mode, smtp.reply = "reply", "451 4.7.1 Greylisted, try later"
    with Worker(beat=True, smtp_port=smtp.port, env=FAST):
        send = post(api, send_key, "qw-2")
        wait_for(lambda: send.events.filter(type="email.delayed").exists(), what="a deferral")
        smtp.mode = "accept"
        wait_for(lambda: status_of(send) == "sent", what="the delivery after the deferral")
    kinds = list(send.events.order_by("occurred_at").values_list("type", flat=True))
    assert kinds[-1] == "email.sent" and set(kinds[:-1]) == {"email.delayed"}
    assert len(smtp.messages) == 1


def test_a_permanent_refusal_fails_the_queued_send(api, send_key, smtp):
    smtp.mode, smtp.reply = "reply", "550 5.1.1 No such user here"
    with Worker(smtp_port=smtp.port):
        send = post(api, send_key, "qw-3")
        wait_for(lambda: status_of(send) == "failed", what="the failure")
    (event,) = send.events.all()
    assert (event.type, event.data["smtpCode"]) == ("email.failed", 550)
    assert IdempotencyRecord.objects.get().response_body["status"] == "failed"
    assert smtp.messages == []


def test_a_worker_killed_mid_delivery_loses_nothing_and_delivers_once(api, send_key, smtp):
    smtp.mode = "hold"  # DATA waits: the worker is in the middle of delivering
    env = {**FAST, "DELIVERY_CLAIM_SECONDS": "2"}
    first = Worker(smtp_port=smtp.port, env=env, concurrency=1).start()
    try:
        send = post(api, send_key, "qw-4")
        wait_for(smtp.arrived.is_set, what="the message in flight")
    finally:
        first.kill()  # SIGKILL: no bookkeeping, the broker message unacknowledged
    smtp.mode = "accept"
    smtp.release()
    assert smtp.messages == [] and status_of(send) == "queued"

    with Worker(beat=True, smtp_port=smtp.port, env=env, purge=False):
        wait_for(lambda: status_of(send) == "sent", what="the delivery after the crash")
    assert len(smtp.messages) == 1
    assert Message.objects.filter(send=send).count() == 1
    assert list(send.events.values_list("type", flat=True)) == ["email.sent"]
    assert not QueuedSend.objects.exists()


def test_a_send_accepted_while_the_broker_is_down_is_delivered_by_the_sweeper(
    api, send_key, smtp, monkeypatch
):
    monkeypatch.setattr(jobs, "_skip_until", float("inf"))  # every publish fails
    send = post(api, send_key, "qw-5")
    monkeypatch.setattr(jobs, "_skip_until", 0.0)

    with Worker(beat=True, smtp_port=smtp.port, env=FAST):
        wait_for(lambda: status_of(send) == "sent", what="the sweeper's delivery")
    assert len(smtp.messages) == 1


def test_two_workers_racing_one_job_deliver_it_once(api, send_key, smtp, monkeypatch):
    monkeypatch.setattr(jobs, "_skip_until", float("inf"))
    send = post(api, send_key, "qw-6")
    monkeypatch.setattr(jobs, "_skip_until", 0.0)
    job = QueuedSend.objects.get(send=send)

    with Worker(smtp_port=smtp.port), Worker(smtp_port=smtp.port, purge=False):
        for _ in range(8):  # the broker delivers the same job many times
            assert jobs.publish(deliver_queued, job.pk)
        wait_for(lambda: status_of(send) == "sent", what="the delivery")
        # Give the other copies time to run; each finds the job claimed or gone.
        wait_for(lambda: not QueuedSend.objects.exists(), what="the job gone")
    assert len(smtp.messages) == 1
    assert Message.objects.filter(send=send).count() == 1
