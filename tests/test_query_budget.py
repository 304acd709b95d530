"""Query budget of the send API (issue 15's target: at most 5 for a fresh send, 1 for a replay).

Measured in autocommit, as in production (transaction=True): no test transaction adds savepoint
statements around the idempotency claim. The key was used a moment before, as in steady
traffic, so the once-a-minute last_used_at update is not part of the request. Counted twice:
with usage counted as in production (USAGE_FLUSH_SECONDS > 0: a worker's thread writes the sums,
the request does not) and as in development (USAGE_FLUSH_SECONDS=0: one more statement, the
usage upsert, at the end of every request).

On PostgreSQL the send path's statements are prepared once per database connection
(fluxomail/prepared.py): each test first makes a request of the same shape on the connection,
as steady traffic on a persistent connection has; the first request of each shape on a new
connection sends one PREPARE per statement more (test_prepared_once_per_connection).
"""

import pytest
from django.db import connection

from contacts.services import suppress
from usage import recording

SEND = "/api/v1/emails/send"

# The real numbers with production's usage counting (see README, "Query budget"), per database.
# The key (with its organization) and the policy come from the per-process hot cache
# (fluxomail/hotcache.py) of a key in steady use.
BUDGET = {
    # sends/sql.py: the claim is one statement (INSERT ... ON CONFLICT DO NOTHING with the
    # record that holds the key), then the suppression check with the send's INSERT (made only
    # when no recipient is held back) and, once the provider has answered, one data-modifying
    # statement for every write after delivery.
    "postgresql": {
        "fresh_with_key": 3,
        "fresh_without_key": 2,
        # The check finds the `to` held back: the send is inserted by a statement of its own.
        "suppressed_with_key": 4,
        # Queue mode: the claim, the suppression check, and the send, its job and the key's
        # answer in one statement.
        "queued_with_key": 3,
        "replay": 1,
    },
    # The ORM's statements (SQLite has no INSERT/UPDATE inside WITH): idempotency lookup +
    # claim + suppression check + send, then BEGIN, message, event, event counter upsert, send
    # status, record completion, COMMIT.
    "sqlite": {
        "fresh_with_key": 11,
        "fresh_without_key": 8,
        # Without the message row (nothing delivered).
        "suppressed_with_key": 10,
        # Lookup, claim, suppression check, BEGIN, send, its status, job, record, COMMIT.
        "queued_with_key": 9,
        "replay": 1,
    },
}


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


@pytest.fixture(params=["production", "development"])
def usage_mode(request, settings):
    """Usage counted by the worker's thread (the sums held for an hour here, so that the thread
    writes nothing during the test) or by an upsert at the end of each request."""
    recording.flush()
    settings.USAGE_FLUSH_SECONDS = 3600 if request.param == "production" else 0
    yield request.param
    recording.flush()
    settings.USAGE_FLUSH_SECONDS = 0


@pytest.fixture
def budget(usage_mode):
    def of(request: str) -> int:
        usage_upsert = 1 if usage_mode == "development" else 0
        return BUDGET[connection.vendor][request] + usage_upsert

    return of


@pytest.fixture
def warm_key(api, send_key, seed_body):
    # Steady state: the key's last_used_at was just written, as for any key in use.
    assert send(api, send_key, seed_body).status_code == 200
    return send_key


@pytest.mark.django_db(transaction=True)
class TestQueryBudget:
    def test_the_budget_meets_the_target(self):
        for vendor in BUDGET.values():
            assert vendor["replay"] <= 1
        assert max(BUDGET["postgresql"].values()) + 1 <= 5  # development's usage upsert too

    def test_fresh_send_with_an_idempotency_key(
        self, api, warm_key, seed_body, budget, django_assert_num_queries
    ):
        send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-warm")
        with django_assert_num_queries(budget("fresh_with_key")):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-1")
        assert response.status_code == 200

    def test_fresh_send_without_a_key(
        self, api, warm_key, seed_body, budget, django_assert_num_queries
    ):
        send(api, warm_key, seed_body)
        with django_assert_num_queries(budget("fresh_without_key")):
            assert send(api, warm_key, seed_body).status_code == 200

    def test_text_only_send_costs_as_much_as_an_html_send(
        self, api, warm_key, seed_body, budget, django_assert_num_queries
    ):
        # The policy is read for every send (its delivery mode), not only for HTML rendering.
        del seed_body["htmlContent"]
        send(api, warm_key, seed_body)
        with django_assert_num_queries(budget("fresh_without_key")):
            assert send(api, warm_key, seed_body).status_code == 200

    def test_replay(self, api, warm_key, seed_body, budget, django_assert_num_queries):
        send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-2")
        with django_assert_num_queries(budget("replay")):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-2")
        assert response.json()["reused"] is True

    def test_suppressed_send_with_an_idempotency_key(
        self, api, warm_key, seed_body, budget, django_assert_num_queries
    ):
        suppress(
            organization_id=warm_key.key.organization_id,
            address=seed_body["to"],
            reason="manual",
            actor="test",
        )
        send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-warm")
        with django_assert_num_queries(budget("suppressed_with_key")):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-3")
        assert response.json()["status"] == "suppressed"

    def test_queued_send_with_an_idempotency_key(
        self, api, warm_key, seed_body, budget, settings, django_assert_num_queries
    ):
        settings.DELIVERY_MODE = "queue"
        send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-warm")
        with django_assert_num_queries(budget("queued_with_key")):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-4")
        assert response.json()["status"] == "queued"


def _statements(context) -> list[str]:
    """The first word of each statement of the send path (development's usage upsert left
    out)."""
    return [
        query["sql"].split(" ", 1)[0]
        for query in context.captured_queries
        if "usage_usage" not in query["sql"]
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestPreparedStatements:
    """fluxomail/prepared.py: the send path's statements are prepared once per connection."""

    def test_prepared_once_per_connection(self, api, warm_key, seed_body):
        from django.test.utils import CaptureQueriesContext

        connection.close()  # a new connection: nothing prepared on it yet
        with CaptureQueriesContext(connection) as first:
            assert send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="p-1").status_code == 200
        # The claim, the check with the send's INSERT, and the writes after delivery.
        assert _statements(first) == ["PREPARE", "EXECUTE"] * 3
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'flx_%%'")
            assert cursor.fetchone() == (3,)

        with CaptureQueriesContext(connection) as second:
            assert send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="p-2").status_code == 200
        assert _statements(second) == ["EXECUTE"] * 3
        # A replay runs the prepared claim, and answers from the record.
        with CaptureQueriesContext(connection) as replay:
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="p-2")
        assert _statements(replay) == ["EXECUTE"]
        assert response.json()["reused"] is True

        connection.close()  # a reconnect prepares again
        with CaptureQueriesContext(connection) as again:
            assert send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="p-3").status_code == 200
        assert _statements(again) == ["PREPARE", "EXECUTE"] * 3

    def test_a_rolled_back_transaction_keeps_what_it_prepared(self, api, warm_key, seed_body):
        from django.db import transaction

        connection.close()

        class Rollback(Exception):
            pass

        with pytest.raises(Rollback), transaction.atomic():
            assert send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="r-1").status_code == 200
            raise Rollback
        from sends.models import Send

        assert not Send.objects.filter(idempotency_key="r-1").exists()
        # PREPARE is not transactional: the statements are there, and run.
        assert send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="r-1").status_code == 200
        assert Send.objects.get(idempotency_key="r-1").status == "sent"

    def test_off_sends_the_statements_as_text(self, api, warm_key, seed_body, settings):
        from django.test.utils import CaptureQueriesContext

        from sends.models import IdempotencyRecord, Send

        settings.DATABASE_PREPARED_STATEMENTS = False
        connection.close()
        with CaptureQueriesContext(connection) as context:
            assert send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="t-1").status_code == 200
        assert _statements(context) == ["WITH"] * 3
        send_row = Send.objects.get(idempotency_key="t-1")
        assert send_row.status == "sent"
        assert IdempotencyRecord.objects.get(key="t-1").send_id == send_row.pk
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cursor.fetchone() == (0,)

    def test_a_parameter_is_not_cut_to_its_column_length(self, api, warm_key, seed_body):
        # Parameters are declared without a length: an over-long value fails as it would in
        # a statement sent as text, it is never silently cut to the column's length.
        from django.db import DataError
        from django.utils import timezone

        from sends import sql
        from sends.models import IdempotencyRecord

        record = IdempotencyRecord(
            organization_id=warm_key.key.organization_id,
            key="k" * 1000,
            endpoint="send",
            fingerprint="f",
            state=IdempotencyRecord.State.IN_PROGRESS,
            locked_at=timezone.now(),
            expires_at=timezone.now(),
        )
        with pytest.raises(DataError):
            sql.claim(record)
