"""Idempotency keys: replays, conflicts, takeovers, retention; concurrency on PostgreSQL."""

import threading
import time
from datetime import timedelta

import pytest
import requests
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from sends import idempotency, services
from sends.delivery import PooledSMTPBackend
from sends.models import IdempotencyRecord, Message, Send
from tests.conftest import free_port
from tests.locks import a_session_waits_on_a_lock
from usage.models import UsageCounter

SEND = "/api/v1/emails/send"
GLOBAL = "/api/v1/emails/send-global"


def send(api, key, body, path=SEND, **extra):
    return api.post(path, body, format="json", **key.bearer, **extra)


@pytest.mark.django_db
class TestReplay:
    def test_replay_returns_first_send_id_with_reused_true(self, api, send_key, seed_body):
        first = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        again = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert again.status_code == 200
        assert again.json() == dict(first.json(), reused=True)
        assert again["Idempotency-Replayed"] == "true"
        assert again["Idempotency-Key"] == "order-1"
        assert len(mail.outbox) == 1
        assert Send.objects.count() == 1

    def test_replay_is_counted_as_a_replay_not_a_send(self, api, send_key, seed_body):
        send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")
        send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        counter = UsageCounter.objects.get()
        assert (counter.requests, counter.sends, counter.replays) == (2, 1, 1)

    def test_body_field_key_replays_like_the_header(self, api, send_key, seed_body):
        first = send(api, send_key, dict(seed_body, idempotencyKey="order-2"))

        again = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-2")

        assert again.json() == dict(first.json(), reused=True)
        assert first["Idempotency-Key"] == "order-2"

    def test_quoted_structured_field_key_is_unquoted(self, api, send_key, seed_body):
        first = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY='"order-3"')

        again = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-3")

        assert first["Idempotency-Key"] == "order-3"
        assert again.json()["reused"] is True

    def test_same_header_and_body_key_is_accepted(self, api, send_key, seed_body):
        response = send(
            api, send_key, dict(seed_body, idempotencyKey="k"), HTTP_IDEMPOTENCY_KEY="k"
        )

        assert response.status_code == 200

    def test_keys_are_scoped_to_the_organization_not_the_api_key(
        self, api, send_key, alice_key, charlie_key, seed_body
    ):
        first = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="shared")

        rotated = send(api, alice_key, seed_body, HTTP_IDEMPOTENCY_KEY="shared")
        other_org = send(api, charlie_key, seed_body, HTTP_IDEMPOTENCY_KEY="shared")

        assert rotated.json() == dict(first.json(), reused=True)
        assert other_org.json()["reused"] is False
        assert other_org.json()["sendId"] != first.json()["sendId"]
        assert len(mail.outbox) == 2


@pytest.mark.django_db
class TestConflicts:
    def test_same_key_with_another_body_is_422(self, api, send_key, seed_body):
        send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        response = send(
            api, send_key, dict(seed_body, subject="Other"), HTTP_IDEMPOTENCY_KEY="order-1"
        )

        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "idempotency_key_reused"
        assert body["message"] == "Idempotency key was already used with a different request"
        assert body["details"] == {}
        assert response["Idempotency-Key"] == "order-1"
        assert len(mail.outbox) == 1

    def test_same_key_on_the_other_endpoint_is_422(self, api, send_key, seed_body):
        send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        response = send(api, send_key, seed_body, GLOBAL, HTTP_IDEMPOTENCY_KEY="order-1")

        assert response.status_code == 422

    def test_key_in_progress_is_409_with_retry_after(self, api, send_key, seed_body, acme):
        send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")
        IdempotencyRecord.objects.update(state="in_progress", locked_at=timezone.now())

        response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert response.status_code == 409
        assert response["Retry-After"] == "1"
        assert response.json()["code"] == "idempotency_in_progress"
        assert len(mail.outbox) == 1

    def test_abandoned_claim_is_retried_on_the_send_the_dead_worker_stored(
        self, api, send_key, seed_body, acme, settings
    ):
        settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = 60
        request = idempotency.from_request({"Idempotency-Key": "order-1"}, seed_body, "send")
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            # A worker claims the key, stores its Send, then dies before delivering.
            idempotency.claim(acme, request)
            orphan = services._create_send(
                organization=acme,
                key=send_key.key,
                endpoint="send",
                data=dict(seed_body, policyKey="transactional"),
                request_id="req-dead-worker",
                idempotency_key="order-1",
            )
            traveller.shift(timedelta(seconds=30))
            assert send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1").status_code == 409
            traveller.shift(timedelta(seconds=31))

            response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert response.status_code == 200
        assert response.json()["reused"] is False
        assert response.json()["sendId"] == orphan.public_id
        assert Send.objects.get().status == "sent"
        assert Message.objects.filter(send=orphan).count() == 1
        record = IdempotencyRecord.objects.get()
        assert (record.state, record.send_id) == ("completed", orphan.pk)
        assert len(mail.outbox) == 1

    def test_late_worker_cannot_overwrite_the_answer_of_the_worker_that_took_over(
        self, api, send_key, seed_body, acme, settings
    ):
        settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = 60
        request = idempotency.from_request({"Idempotency-Key": "order-1"}, seed_body, "send")
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            # Worker A claims the key and hangs past the lock timeout; B takes over and delivers.
            stale = idempotency.claim(acme, request).record
            traveller.shift(timedelta(seconds=61))
            taken_over = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")
            delivered = Send.objects.get()

            # A wakes up and reports a failure, then an answer of its own: neither is stored.
            assert idempotency.fail(stale, None) is False
            assert idempotency.complete(stale, delivered, {"sendId": "sends_stale"}) is False
            record = IdempotencyRecord.objects.get()
            retry = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert taken_over.status_code == 200
        assert (record.state, record.send_id, record.response_status, record.locked_at) == (
            "completed",
            delivered.pk,
            200,
            None,
        )
        assert record.response_body == taken_over.json()
        assert retry.status_code == 200
        assert retry.json() == dict(taken_over.json(), reused=True)
        assert len(mail.outbox) == 1

    def test_takeover_gives_the_new_worker_a_lease_the_old_one_does_not_hold(
        self, send_key, seed_body, acme, settings
    ):
        settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = 60
        request = idempotency.from_request({"Idempotency-Key": "order-1"}, seed_body, "send")
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            stale = idempotency.claim(acme, request).record
            first_lease = stale.locked_at
            traveller.shift(timedelta(seconds=61))
            owner = idempotency.claim(acme, request).record

        assert owner.locked_at > first_lease
        assert IdempotencyRecord.objects.get().locked_at == owner.locked_at
        assert idempotency.fail(stale, None) is False
        assert idempotency.fail(owner, None) is True
        assert IdempotencyRecord.objects.get().state == "failed"

    def test_a_429_does_not_use_up_the_key(self, api, make_key, alice, seed_body):
        key = make_key(alice.organization, rate_limit=1)
        assert send(api, key, seed_body).status_code == 200

        assert send(api, key, seed_body, HTTP_IDEMPOTENCY_KEY="later").status_code == 429

        assert not IdempotencyRecord.objects.filter(key="later").exists()

    def test_a_429_leaves_a_failed_key_failed_and_its_retry_on_the_same_send(
        self, api, make_key, alice, seed_body, settings
    ):
        key = make_key(alice.organization, rate_limit=1)
        settings.EMAIL_BACKEND = "sends.delivery.PooledSMTPBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            failed = send(api, key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")
            settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
            limited = send(api, key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")
            record = IdempotencyRecord.objects.get()
            traveller.shift(timedelta(seconds=60))  # the next window
            retried = send(api, key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")

        assert failed.status_code == 500
        assert limited.status_code == 429
        assert (record.state, record.locked_at) == ("failed", None)
        assert retried.status_code == 200
        assert retried.json()["sendId"] == failed.json()["sendId"]
        assert len(mail.outbox) == 1


@pytest.mark.django_db
class TestRetention:
    def test_key_may_be_used_afresh_after_24_hours(self, api, send_key, seed_body):
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            first = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-1")
            traveller.shift(timedelta(hours=24, seconds=1))

            again = send(
                api, send_key, dict(seed_body, subject="New"), HTTP_IDEMPOTENCY_KEY="order-1"
            )

        assert again.status_code == 200
        assert again.json()["reused"] is False
        assert again.json()["sendId"] != first.json()["sendId"]
        assert len(mail.outbox) == 2

    def test_purge_idempotency_deletes_expired_records_only(self, api, send_key, seed_body):
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="old")
            traveller.shift(timedelta(hours=23))
            send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="recent")
            traveller.shift(timedelta(hours=2))

            call_command("purge_idempotency", stdout=open("/dev/null", "w"))

        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]
        assert Send.objects.count() == 2


def _post_all(url: str, token: str, bodies: list[dict], key: str) -> list[requests.Response]:
    """Posts every body at once from its own thread; returns the responses in order."""
    barrier = threading.Barrier(len(bodies))
    responses: list = [None] * len(bodies)

    def worker(index: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            responses[index] = session.post(
                url,
                json=bodies[index],
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                timeout=30,
            )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.fixture
def _fresh_pool():
    PooledSMTPBackend.close_all()
    yield
    PooledSMTPBackend.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_fresh_pool")
class TestConcurrency:
    def test_twenty_concurrent_requests_with_one_key_deliver_once(
        self, live_server, smtp_server, send_key, seed_body
    ):
        responses = _post_all(live_server.url + SEND, send_key.token, [seed_body] * 20, "race-1")

        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 409}, statuses
        ok = [r.json() for r in responses if r.status_code == 200]
        assert ok
        assert len({body["sendId"] for body in ok}) == 1
        assert sum(not body["reused"] for body in ok) == 1
        for conflict in (r for r in responses if r.status_code == 409):
            assert conflict.json()["code"] == "idempotency_in_progress"
            assert conflict.headers["Retry-After"] == "1"
        assert len(smtp_server.messages) == 1
        assert Send.objects.count() == 1

    def test_twenty_concurrent_different_bodies_with_one_key_give_one_send_and_422s(
        self, live_server, smtp_server, send_key, seed_body
    ):
        bodies = [dict(seed_body, subject=f"Hello {i}") for i in range(20)]

        responses = _post_all(live_server.url + SEND, send_key.token, bodies, "race-2")

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [422] * 19, statuses
        assert len(smtp_server.messages) == 1
        assert Send.objects.count() == 1


def _claim_committed_once_another_waits(organization, request, holding: threading.Event) -> None:
    """Another request's claim on the key: inserted, then committed only once some other
    session waits on it (the INSERT of the request under test, on the unique constraint)."""
    try:
        with transaction.atomic():
            now = timezone.now()
            IdempotencyRecord.objects.create(
                organization=organization,
                key=request.key,
                endpoint=request.endpoint,
                fingerprint=request.fingerprint,
                locked_at=now,
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
            holding.set()
            for _ in range(600):
                if a_session_waits_on_a_lock():
                    break
                time.sleep(0.05)
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_loser_of_the_claim_race_gets_409_without_using_rate_limit_budget(
    api, make_key, alice, seed_body
):
    capped = make_key(alice.organization, rate_limit=5, name="capped")
    request = idempotency.from_request({"Idempotency-Key": "race"}, seed_body, "send")
    holding = threading.Event()
    rival = threading.Thread(
        target=_claim_committed_once_another_waits, args=(alice.organization, request, holding)
    )
    rival.start()
    assert holding.wait(30)
    try:
        # The lookup finds no record (the rival's is not committed yet); the claim loses.
        lost = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="race")
    finally:
        rival.join(60)
    fresh = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="another")

    assert lost.status_code == 409, lost.content
    assert lost.json()["code"] == "idempotency_in_progress"
    assert lost["X-RateLimit-Remaining"] == "5"
    assert fresh.status_code == 200
    assert fresh["X-RateLimit-Remaining"] == "4"
    assert list(Send.objects.values_list("idempotency_key", flat=True)) == ["another"]
    assert len(mail.outbox) == 1
