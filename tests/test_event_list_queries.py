"""GET /api/v1/events with several types: one range scan per type, merged (sends.event_api)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sends import events
from sends.models import Send
from sends.timeline import encode_cursor

pytestmark = pytest.mark.django_db

KINDS = ["email.sent", "email.opened", "email.clicked", "email.opened", "email.bounced"]


@pytest.fixture
def recorded(acme) -> list:
    send = Send.objects.create(organization=acme, endpoint="send", to="a@example.com")
    return [events.record(send=send, type=kind) for kind in KINDS * 2]


def ids(response) -> list[str]:
    return [event["id"] for event in response.json()["events"]]


def test_several_types_page_newest_first_across_types(api, read_key, recorded):
    wanted = [e.public_id for e in reversed(recorded) if e.type in ("email.opened", "email.sent")]
    query = "?types=email.opened&types=email.sent&limit=4"
    first = api.get(f"/api/v1/events{query}", **read_key.bearer)
    assert ids(first) == wanted[:4]
    assert first.json()["nextCursor"] == encode_cursor(wanted[3])
    second = api.get(
        f"/api/v1/events{query}&cursor={first.json()['nextCursor']}", **read_key.bearer
    )
    assert ids(second) == wanted[4:]
    assert second.json()["nextCursor"] is None


def test_several_types_are_one_query_per_type_each_on_one_type(api, read_key, recorded):
    with CaptureQueriesContext(connection) as captured:
        response = api.get(
            "/api/v1/events?types=email.opened&types=email.clicked", **read_key.bearer
        )
    assert response.status_code == 200
    statements = [q["sql"] for q in captured if 'FROM "sends_event"' in q["sql"]]
    assert len(statements) == 2
    assert all(" IN (" not in sql and '"type" = ' in sql for sql in statements)
