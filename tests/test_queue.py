"""Queued delivery in one process: the API answers `queued` once the send and its job are
stored; the worker's delivery (sends.queue.deliver) retries deferrals with `email.delayed`
events until the window ends, fails on a 5xx, and replays answer the current status.
(A real worker runs it in tests/test_queue_worker.py.)"""

from datetime import timedelta

import pytest
from django.utils import timezone

from sends import queue
from sends.models import Event, IdempotencyRecord, Policy, QueuedSend, Send
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

SEND = "/api/v1/emails/send"


@pytest.fixture
def queue_mode(settings):
    settings.DELIVERY_MODE = "queue"


def post(api, key, body, idem=None):
    extra = {"HTTP_IDEMPOTENCY_KEY": idem} if idem else {}
    return api.post(SEND, body, format="json", **key.bearer, **extra)


def run_until_final(job_pk: int, time_machine, limit: int = 50) -> str:
    status = None
    for _ in range(limit):
        job = QueuedSend.objects.filter(pk=job_pk).first()
        if job is None:
            return status
        time_machine.move_to(job.next_attempt_at + timedelta(milliseconds=1), tick=False)
        status = queue.deliver(job_pk)
    raise AssertionError("the job never ended")


def test_queue_mode_answers_queued_and_sends_nothing_in_the_request(
    api, send_key, seed_body, smtp_server, queue_mode
):
    response = post(api, send_key, seed_body, idem="q-1")

    assert response.status_code == 200
    send = Send.objects.get()
    assert response.json() == {
        "sendId": send.public_id,
        "status": "queued",
        "messageId": None,
        "reused": False,
    }
    assert send.status == "queued"
    assert smtp_server.messages == []
    job = QueuedSend.objects.get(send=send)
    assert job.payload["subject"] == "Hello" and job.attempts == 0
    assert IdempotencyRecord.objects.get().response_body == response.json()


def test_a_worker_delivers_a_queued_send_and_a_replay_answers_sent(
    api, send_key, seed_body, smtp_server, queue_mode
):
    body = {**seed_body, "attachments": [{"filename": "a.txt", "contentBase64": "aGk="}]}
    send_id = post(api, send_key, body, idem="q-2").json()["sendId"]
    # Recorded when the request is accepted, by the send's own INSERT.
    assert Send.objects.get(public_id=send_id).attachments == [
        {"filename": "a.txt", "contentType": "text/plain", "size": 2}
    ]

    assert queue.deliver(QueuedSend.objects.get().pk) == "sent"

    send = Send.objects.get(public_id=send_id)
    (message,) = send.messages.all()
    assert send.status == "sent"
    assert len(smtp_server.messages) == 1
    assert b"Hi there" in smtp_server.messages[0].content
    assert b'filename="a.txt"\r\n\r\nhi\r\n' in smtp_server.messages[0].content
    assert not QueuedSend.objects.exists()  # the job, with the request's body, is gone
    assert list(send.events.values_list("type", flat=True)) == ["email.sent"]
    replay = post(api, send_key, body, idem="q-2")
    assert replay.json() == {
        "sendId": send_id,
        "status": "sent",
        "messageId": message.provider_message_id,
        "reused": True,
    }
    assert replay["Idempotency-Replayed"] == "true"


def test_a_deferral_is_retried_with_a_delayed_event_then_delivered(
    api, send_key, seed_body, smtp_server, queue_mode, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)
    post(api, send_key, seed_body)
    job = QueuedSend.objects.get()
    smtp_server.reply = "451 4.7.1 Greylisted, try later"

    assert queue.deliver(job.pk) == "queued"
    assert queue.deliver(job.pk) is None  # not due yet

    job.refresh_from_db()
    assert timedelta(seconds=48) <= job.next_attempt_at - timezone.now() <= timedelta(seconds=72)
    send = job.send
    send.refresh_from_db()
    assert send.status == "queued"
    (delayed,) = send.events.all()
    assert delayed.type == "email.delayed"
    assert delayed.data == {
        "reason": "SMTPDataError: 451 4.7.1 Greylisted, try later",
        "smtpCode": 451,
        "mtaHost": "127.0.0.1",
    }

    smtp_server.reply = None
    assert run_until_final(job.pk, time_machine) == "sent"
    assert list(send.events.order_by("occurred_at").values_list("type", flat=True)) == [
        "email.delayed",
        "email.sent",
    ]
    assert send.messages.count() == 2  # one attempt row per try
    assert len(smtp_server.messages) == 1


def test_an_smtp_server_that_is_down_is_retried_until_the_window_ends(
    api, send_key, seed_body, queue_mode, time_machine, settings
):
    settings.EMAIL_BACKEND = "sends.delivery.PooledSMTPBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    settings.DELIVERY_RETRY_HOURS = 3
    time_machine.move_to(timezone.now(), tick=False)
    send_id = post(api, send_key, seed_body, idem="q-down").json()["sendId"]

    assert run_until_final(QueuedSend.objects.get().pk, time_machine) == "failed"

    send = Send.objects.get(public_id=send_id)
    kinds = list(send.events.order_by("occurred_at").values_list("type", flat=True))
    assert kinds[-1] == "email.failed" and set(kinds[:-1]) == {"email.delayed"}
    # 1, 2, 4, 8, 16, 32, 60, 60 minutes (±20%) fit in 3 hours: 7 to 9 deferrals.
    assert 7 <= len(kinds) - 1 <= 9
    assert send.events.get(type="email.failed").data == {
        "reason": "ConnectionRefusedError: Connection refused"
    }
    replay = post(api, send_key, seed_body, idem="q-down").json()
    assert (replay["status"], replay["messageId"]) == ("failed", None)


def test_a_permanent_refusal_fails_the_send_at_once(
    api, send_key, seed_body, smtp_server, queue_mode
):
    post(api, send_key, seed_body)
    smtp_server.reply = "550 5.1.1 No such user"

    assert queue.deliver(QueuedSend.objects.get().pk) == "failed"

    send = Send.objects.get()
    assert send.status == "failed"
    (failed,) = send.events.all()
    assert (failed.type, failed.data["smtpCode"]) == ("email.failed", 550)
    assert not QueuedSend.objects.exists()
    assert smtp_server.messages == []


def test_a_claimed_job_is_not_delivered_by_another_worker(
    api, send_key, seed_body, smtp_server, queue_mode
):
    post(api, send_key, seed_body)
    job = QueuedSend.objects.get()
    QueuedSend.objects.filter(pk=job.pk).update(
        locked_until=timezone.now() + timedelta(minutes=5), attempts=1
    )

    assert queue.deliver(job.pk) is None
    assert smtp_server.messages == []


def test_a_policy_overrides_the_delivery_mode(api, alice, send_key, seed_body, smtp_server):
    Policy.objects.filter(organization=alice.organization, key="bulk").update(delivery_mode="queue")

    sync = post(api, send_key, seed_body).json()
    queued = post(api, send_key, {**seed_body, "policyKey": "bulk"}).json()

    assert (sync["status"], queued["status"]) == ("sent", "queued")
    assert len(smtp_server.messages) == 1


def test_a_policy_may_keep_sync_delivery_in_queue_mode(
    api, alice, send_key, seed_body, smtp_server, queue_mode
):
    Policy.objects.filter(organization=alice.organization, key="transactional").update(
        delivery_mode="sync"
    )
    del seed_body["htmlContent"]  # text only: the policy is read all the same

    assert post(api, send_key, seed_body).json()["status"] == "sent"


def test_the_sweeper_publishes_due_jobs_only(api, send_key, seed_body, queue_mode):
    post(api, send_key, seed_body)
    post(api, send_key, seed_body)
    later = QueuedSend.objects.order_by("pk").last()
    QueuedSend.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=1)
    )

    assert queue.sweep() == 1


def test_a_delayed_event_reaches_the_events_api(
    api, send_key, read_key, seed_body, smtp_server, queue_mode
):
    post(api, send_key, seed_body)
    smtp_server.reply = "421 4.3.2 Service shutting down"
    queue.deliver(QueuedSend.objects.get().pk)

    events = api.get("/api/v1/events", **read_key.bearer).json()["events"]

    assert [e["type"] for e in events] == [Event.Type.DELAYED]
    assert events[0]["data"]["smtpCode"] == 421
