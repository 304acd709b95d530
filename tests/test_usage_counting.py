"""Usage counters of the send API: hourly buckets per key and endpoint, written by upsert."""

import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.db import connection

from sends import views
from usage import recording
from usage.models import UsageCounter, UsageRejection

SEND = "/api/v1/emails/send"
GLOBAL = "/api/v1/emails/send-global"


def send(api, key, body, path=SEND, **extra):
    return api.post(path, body, format="json", **key.bearer, **extra)


@pytest.mark.django_db
class TestCounting:
    def test_a_send_is_counted_in_its_utc_hour_bucket(self, api, send_key, seed_body, monkeypatch):
        # The view's clock: the request starts at 100.0 s and is counted at 100.25 s.
        readings = iter([100.0, 100.25])
        monkeypatch.setattr(views, "time", SimpleNamespace(monotonic=lambda: next(readings)))
        with time_machine.travel(datetime(2026, 3, 1, 14, 42, 7, tzinfo=UTC), tick=False):
            send(api, send_key, seed_body)

        counter = UsageCounter.objects.get()
        assert counter.hour == datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
        assert (counter.organization, counter.api_key, counter.endpoint) == (
            send_key.key.organization,
            send_key.key,
            "send",
        )
        assert (counter.requests, counter.sends, counter.rejected, counter.failures) == (
            1,
            1,
            0,
            0,
        )
        assert counter.latency_ms_total == 250

    def test_requests_in_the_same_hour_add_up_and_the_next_hour_starts_a_new_row(
        self, api, send_key, seed_body
    ):
        with time_machine.travel(datetime(2026, 3, 1, 14, 5, tzinfo=UTC), tick=False) as t:
            send(api, send_key, seed_body)
            send(api, send_key, {})
            t.shift(timedelta(minutes=50))
            send(api, send_key, seed_body, GLOBAL)
            t.shift(timedelta(minutes=10))
            send(api, send_key, seed_body)

        rows = UsageCounter.objects.order_by("hour", "endpoint")
        assert [(r.hour.hour, r.endpoint, r.requests, r.sends, r.rejected) for r in rows] == [
            (14, "send", 2, 1, 1),
            (14, "send-global", 1, 1, 0),
            (15, "send", 1, 1, 0),
        ]
        assert [r.global_endpoint_sends for r in rows] == [0, 1, 0]
        assert UsageRejection.objects.get().code == "validation_error"

    def test_keys_are_counted_apart(self, api, send_key, alice_key, seed_body):
        send(api, send_key, seed_body)
        send(api, alice_key, seed_body)

        assert sorted(UsageCounter.objects.values_list("api_key", "sends")) == sorted(
            [(send_key.key.pk, 1), (alice_key.key.pk, 1)]
        )

    def test_a_401_is_not_counted(self, api, seed_body):
        api.post(SEND, seed_body, format="json", HTTP_AUTHORIZATION="Bearer flx_nope")

        assert not UsageCounter.objects.exists()

    def test_buffered_counting_writes_the_sums_at_the_flush(
        self, api, send_key, seed_body, settings
    ):
        settings.USAGE_FLUSH_SECONDS = 3600
        recording.flush()  # start from an empty buffer and a fresh flush time
        send(api, send_key, seed_body)
        send(api, send_key, {})
        assert not UsageCounter.objects.exists()

        recording.flush()

        counter = UsageCounter.objects.get()
        assert (counter.requests, counter.sends, counter.rejected) == (2, 1, 1)
        assert UsageRejection.objects.get().count == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_lose_no_increment(send_key):
    outcome = recording.Outcome(
        organization_id=send_key.key.organization_id,
        api_key_id=send_key.key.pk,
        endpoint="send",
        status=200,
        sent=True,
        latency_ms=5,
    )
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            recording.record(outcome)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    counter = UsageCounter.objects.get()
    assert (counter.requests, counter.sends, counter.latency_ms_total) == (160, 160, 800)


def one_send(organization, api_key, *, latency_ms: int) -> recording.Outcome:
    return recording.Outcome(
        organization_id=organization.pk,
        api_key_id=api_key.pk,
        endpoint="send",
        status=200,
        sent=True,
        latency_ms=latency_ms,
    )


@pytest.mark.django_db(transaction=True)
def test_buffered_counts_are_written_by_the_background_thread(settings, alice, make_key):
    settings.USAGE_FLUSH_SECONDS = 0.05
    key = make_key(alice.organization)
    outcome = one_send(alice.organization, key.key, latency_ms=7)
    for _ in range(3):
        recording.record(outcome)
    # No request comes after these: the worker's thread writes them on its own. Poll (bounded)
    # for the row rather than sleeping a fixed time.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = UsageCounter.objects.filter(api_key=key.key).values("requests", "sends").first()
        if row:
            break
        time.sleep(0.05)
    assert row == {"requests": 3, "sends": 3}
    settings.USAGE_FLUSH_SECONDS = 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_idle_flusher_lets_its_database_connection_go(settings, alice, make_key):
    settings.USAGE_FLUSH_SECONDS = 0.05
    key = make_key(alice.organization)
    outcome = one_send(alice.organization, key.key, latency_ms=1)
    recording.record(outcome)

    def others() -> int:
        # Sessions on this test database besides this thread's own.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    deadline = time.monotonic() + 10
    while not UsageCounter.objects.filter(api_key=key.key).exists():
        assert time.monotonic() < deadline, "the flusher never wrote the buffered count"
        time.sleep(0.05)
    # Nothing more is buffered: within a few ticks the thread closes its connection, so idle
    # workers hold no server slot (and the test database can be dropped at the end of the run).
    deadline = time.monotonic() + 10
    while others():
        assert time.monotonic() < deadline, "the idle flusher kept its connection open"
        time.sleep(0.05)
    settings.USAGE_FLUSH_SECONDS = 0
