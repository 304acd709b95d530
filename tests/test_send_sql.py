"""The send path's writes: one statement each on PostgreSQL (sends/sql.py), the ORM's statements
on SQLite. The same rows, the same answers and the same signals either way."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connections, transaction
from django.utils import timezone

from contacts.services import suppress
from fluxomail.api import IdempotencyInProgress
from sends import idempotency, services
from sends.models import (
    Event,
    EventCounter,
    IdempotencyRecord,
    Message,
    Policy,
    ProviderMessageId,
    QueuedSend,
    Send,
)
from sends.signals import event_recorded
from tests.locks import wait_for_a_lock_wait

SEND = "/api/v1/emails/send"


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


@pytest.fixture
def heard():
    """The events that listeners of sends.signals.event_recorded hear, each with whether its
    row was committed (visible to another connection) when they heard of it."""
    events: list[tuple[Event, bool]] = []

    def listener(sender, event, **kwargs):
        committed = []

        def look():
            committed.append(Event.objects.filter(pk=event.pk).exists())
            connections.close_all()

        # Another thread has its own connection: it sees committed rows only.
        reader = threading.Thread(target=look)
        reader.start()
        reader.join()
        events.append((event, committed[0]))

    event_recorded.connect(listener, dispatch_uid="tests.heard")
    yield events
    event_recorded.disconnect(dispatch_uid="tests.heard")


@pytest.mark.django_db(transaction=True)
class TestOutcome:
    def test_a_delivered_send_stores_its_attempt_event_counter_status_and_answer(
        self, api, send_key, seed_body
    ):
        response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert response.status_code == 200
        body = response.json()
        sent = Send.objects.get()
        attempt = Message.objects.get()
        event = Event.objects.get()
        record = IdempotencyRecord.objects.get()
        assert (sent.public_id, sent.status) == (body["sendId"], "sent")
        assert sent.updated_at >= sent.created_at
        assert (attempt.send_id, attempt.provider, attempt.provider_message_id) == (
            sent.pk,
            "locmem",
            body["messageId"],
        )
        assert attempt.to == [seed_body["to"]]
        assert attempt.headers["Message-ID"] == body["messageId"]
        assert attempt.html and attempt.text == mail.outbox[0].body
        assert (event.type, event.send_id, event.message_id) == ("email.sent", sent.pk, attempt.pk)
        assert event.organization_id == sent.organization_id
        assert event.recipient_domain == seed_body["to"].rpartition("@")[2]
        assert event.public_id.startswith("evt_")
        assert list(EventCounter.objects.values_list("name", "count")) == [("sent", 1)]
        assert (record.state, record.send_id, record.response_status, record.locked_at) == (
            "completed",
            sent.pk,
            200,
            None,
        )
        assert record.response_body == body

    def test_listeners_hear_of_a_sent_event_once_after_it_is_committed(
        self, api, send_key, seed_body, heard
    ):
        response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert response.status_code == 200
        [(event, committed)] = heard
        assert committed
        assert (event.type, event.pk) == ("email.sent", Event.objects.get().pk)
        assert event.message_id == Message.objects.get().pk
        assert event.send.public_id == response.json()["sendId"]

    def test_a_suppressed_send_stores_a_dropped_event_heard_once(
        self, api, send_key, seed_body, heard
    ):
        suppress(
            organization_id=send_key.key.organization_id,
            address=seed_body["to"],
            reason="manual",
            actor="test",
        )

        response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert response.json()["status"] == "suppressed"
        assert not Message.objects.exists()
        assert len(mail.outbox) == 0
        event = Event.objects.get()
        assert (event.type, event.message_id, event.data) == (
            "email.dropped",
            None,
            {"reason": "suppressed", "suppressionReason": "manual"},
        )
        assert Send.objects.get().status == "suppressed"
        assert list(EventCounter.objects.values_list("name", "count")) == [("dropped", 1)]
        record = IdempotencyRecord.objects.get()
        assert (record.state, record.response_body) == ("completed", response.json())
        assert [(e.type, committed) for e, committed in heard] == [("email.dropped", True)]

    def test_counters_add_up_over_sends(self, api, send_key, seed_body):
        for _ in range(3):
            assert send(api, send_key, seed_body).status_code == 200

        assert list(EventCounter.objects.values_list("name", "count")) == [("sent", 3)]
        assert Event.objects.count() == Message.objects.count() == 3

    def test_a_provider_with_one_id_per_recipient_gets_a_row_per_id(self, alice, send_key):
        sent = Send.objects.create(
            organization=alice.organization, endpoint="send", to="a@example.com", subject="Hi"
        )
        attempt = Message(
            send=sent,
            from_email="hello@acme.test",
            to=["a@example.com", "b@example.com"],
            provider="mailjet",
            provider_message_id="1111,2222",
        )
        body = {"sendId": sent.public_id, "status": "sent", "messageId": "1111,2222"}

        services._settle(sent, Send.Status.SENT, Event.Type.SENT, None, body, attempt=attempt)

        assert attempt.pk == Message.objects.get().pk
        assert sorted(
            ProviderMessageId.objects.filter(message=attempt).values_list(
                "provider_message_id", flat=True
            )
        ) == ["1111", "2222"]
        assert Message.objects.for_provider_ids({"2222"}) == {"2222": attempt}
        assert Send.objects.get().status == "sent"

    def test_a_worker_whose_claim_was_taken_over_records_its_delivery_but_not_its_answer(
        self, acme, send_key, seed_body, settings, caplog
    ):
        settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = 60
        request = idempotency.from_request({"Idempotency-Key": "order-1"}, seed_body, "send")
        policy = Policy.objects.get(organization=acme, key="transactional")
        data = {**seed_body, "policyKey": "transactional"}
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            stale = idempotency.claim(acme, request)
            traveller.shift(timedelta(seconds=61))
            owner = idempotency.claim(acme, request)

            # The stale worker wakes up and delivers (it cannot know): its rows are written,
            # the key's answer stays with the new owner.
            result = services.send_email(
                org=acme,
                key=send_key.key,
                endpoint="send",
                data=data,
                request_id="req_stale",
                policy=policy,
                claim=stale,
            )

        assert result.body["status"] == "sent"
        record = IdempotencyRecord.objects.get()
        assert (record.state, record.locked_at, record.response_body) == (
            "in_progress",
            owner.record.locked_at,
            None,
        )
        assert Send.objects.get().status == "sent"
        assert Event.objects.get().type == "email.sent"
        assert len(mail.outbox) == 1
        assert "was taken over; answer not stored" in caplog.text


@pytest.mark.django_db(transaction=True)
class TestQueueAccept:
    def test_a_queued_send_stores_the_send_its_job_and_the_answer(
        self, api, send_key, seed_body, settings
    ):
        settings.DELIVERY_MODE = "queue"

        response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        queued = Send.objects.get()
        assert response.json() == {
            "sendId": queued.public_id,
            "status": "queued",
            "messageId": None,
            "reused": False,
        }
        assert (queued.status, queued.idempotency_key, queued.to) == (
            "queued",
            "order-1",
            seed_body["to"],
        )
        job = QueuedSend.objects.get()
        assert (job.send_id, job.attempts, job.locked_until) == (queued.pk, 0, None)
        assert job.payload["subject"] == seed_body["subject"]
        assert job.deadline == job.next_attempt_at + timedelta(hours=settings.DELIVERY_RETRY_HOURS)
        record = IdempotencyRecord.objects.get()
        assert (record.state, record.send_id, record.response_status, record.locked_at) == (
            "completed",
            queued.pk,
            200,
            None,
        )
        assert record.response_body == response.json()
        assert not Event.objects.exists() and len(mail.outbox) == 0

    def test_an_accept_whose_claim_was_taken_over_stores_nothing(
        self, acme, send_key, seed_body, settings
    ):
        settings.DELIVERY_MODE = "queue"
        settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = 60
        request = idempotency.from_request({"Idempotency-Key": "order-1"}, seed_body, "send")
        policy = Policy.objects.get(organization=acme, key="transactional")
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            stale = idempotency.claim(acme, request)
            traveller.shift(timedelta(seconds=61))
            owner = idempotency.claim(acme, request)

            with pytest.raises(IdempotencyInProgress):
                services.send_email(
                    org=acme,
                    key=send_key.key,
                    endpoint="send",
                    data={**seed_body, "policyKey": "transactional"},
                    request_id="req_stale",
                    policy=policy,
                    claim=stale,
                )

        assert not Send.objects.exists()
        assert not QueuedSend.objects.exists()
        record = IdempotencyRecord.objects.get()
        assert (record.state, record.locked_at) == ("in_progress", owner.record.locked_at)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_claim_that_waits_for_a_concurrent_one_replays_its_answer(acme, seed_body):
    """The claim's INSERT waits for a concurrent claim of the same key; that one commits after
    the claim's snapshot was taken, so the record is not in the claim's own result: it is read
    again and answers."""
    request = idempotency.from_request({"Idempotency-Key": "order-1"}, seed_body, "send")
    inserted, commit = threading.Event(), threading.Event()
    answer = {"sendId": "sends_other", "status": "sent", "messageId": "<m@x>", "reused": False}

    def other_worker():
        now = timezone.now()
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                organization=acme,
                key=request.key,
                endpoint="send",
                fingerprint=request.fingerprint,
                state=IdempotencyRecord.State.COMPLETED,
                response_status=200,
                response_body=answer,
                created_at=now,
                expires_at=now + timedelta(hours=24),
            )
            inserted.set()
            commit.wait(10)
        connections.close_all()

    outcome = []

    def claimer():
        try:
            outcome.append(idempotency.claim(acme, request))
        except Exception as exc:  # noqa: BLE001 (reported below)
            outcome.append(exc)
        connections.close_all()

    other = threading.Thread(target=other_worker)
    other.start()
    assert inserted.wait(10)
    waiting = threading.Thread(target=claimer)
    waiting.start()
    # Wait (bounded) until the claim's INSERT waits for the other transaction's lock.
    wait_for_a_lock_wait(10)
    commit.set()
    other.join(10)
    waiting.join(10)

    [result] = outcome
    assert isinstance(result, idempotency.Replay)
    assert result.body == dict(answer, reused=True)
    assert IdempotencyRecord.objects.count() == 1
