"""GET /api/v1/events (the event log) and GET /api/v1/metrics (SPEC.md sections 7 and 9)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from sends import events
from sends.models import Event, EventCounter, Message, Send
from tests.problems import problem

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVENTS = "/api/v1/events"
METRICS = "/api/v1/metrics"


def make_send(organization, *, to="Reader <reader@example.com>", at=T0, **kwargs) -> Send:
    with time_machine.travel(at, tick=False):
        return Send.objects.create(
            organization=organization,
            endpoint="send",
            to=to,
            subject="Hello",
            status=Send.Status.SENT,
            metadata={"orderId": "42"},
            **kwargs,
        )


def record(send, type, *, at, **kwargs) -> Event:
    with time_machine.travel(at, tick=False):
        return events.record(send=send, type=type, **kwargs)


@pytest.fixture
def log(acme, globex):
    """Six Acme events a minute apart (two sends, two domains) and one of Globex."""
    first = make_send(acme)
    message = Message.objects.create(
        send=first,
        from_email="hello@acme.test",
        to=["reader@example.com"],
        provider="smtp",
        provider_message_id="<m1@acme.test>",
    )
    second = make_send(acme, to="other@gmail.test")
    made = [
        record(first, Event.Type.SENT, at=T0, message=message),
        record(second, Event.Type.SENT, at=T0 + timedelta(minutes=1)),
        record(first, Event.Type.OPENED, at=T0 + timedelta(minutes=2), data={"machine": False}),
        record(
            second,
            Event.Type.DELAYED,
            at=T0 + timedelta(minutes=3),
            data={"reason": "try later", "smtpCode": 451, "mtaHost": "mx.gmail.test"},
        ),
        record(
            first,
            Event.Type.CLICKED,
            at=T0 + timedelta(minutes=4),
            data={"url": "https://shop.example/", "machine": False},
        ),
        record(
            second,
            Event.Type.BOUNCED,
            at=T0 + timedelta(minutes=5),
            data={"bounceType": "hard", "reason": "no such user", "smtpCode": 550},
        ),
    ]
    record(make_send(globex), Event.Type.SENT, at=T0 + timedelta(minutes=6))
    return made


def ids(response) -> list[str]:
    return [event["id"] for event in response.json()["events"]]


def test_events_list_newest_first_as_envelopes(api, read_key, log):
    response = api.get(EVENTS, **read_key.bearer)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert ids(response) == [event.public_id for event in reversed(log)]
    assert body["nextCursor"] is None
    assert body["events"][-1] == {
        "id": log[0].public_id,
        "type": "email.sent",
        "created": "2026-03-02T09:00:00.000Z",
        "data": {
            "sendId": log[0].send.public_id,
            "providerMessageId": "<m1@acme.test>",
            "to": "reader@example.com",
            "subject": "Hello",
            "metadata": {"orderId": "42"},
        },
    }
    assert body["events"][0]["data"] == {
        "sendId": log[5].send.public_id,
        "providerMessageId": None,
        "to": "other@gmail.test",
        "subject": "Hello",
        "metadata": {"orderId": "42"},
        "bounceType": "hard",
        "reason": "no such user",
        "smtpCode": 550,
    }


def test_event_ids_are_unique_and_sort_by_time(log):
    public_ids = [event.public_id for event in log]
    assert len(set(public_ids)) == len(public_ids)
    assert public_ids == sorted(public_ids)
    assert all(public_id.startswith("evt_") and len(public_id) == 30 for public_id in public_ids)


def test_cursor_pages_through_every_event_once(api, read_key, log):
    seen, params = [], {"limit": 4}
    while True:
        response = api.get(EVENTS, params, **read_key.bearer)
        assert response.status_code == 200
        seen += ids(response)
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break
        params["cursor"] = cursor
    assert seen == [event.public_id for event in reversed(log)]


def test_limit_zero_answers_an_empty_list(api, read_key, log):
    response = api.get(EVENTS, {"limit": 0}, **read_key.bearer)

    assert response.status_code == 200
    assert response.json() == {"events": [], "nextCursor": None}


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["email.sent"], [1, 0]),
        (["email.sent", "email.bounced"], [5, 1, 0]),
        (["email.sent,email.bounced"], [5, 1, 0]),
        (["email.*"], [5, 4, 3, 2, 1, 0]),
        (["email.opened", "email.*"], [5, 4, 3, 2, 1, 0]),
        (["email.complained"], []),
    ],
)
def test_types_filter_with_wildcard(api, read_key, log, types, expected):
    response = api.get(EVENTS, {"types": types}, **read_key.bearer)

    assert response.status_code == 200
    assert ids(response) == [log[i].public_id for i in expected]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"domain": "gmail.test"}, [5, 3, 1]),
        ({"domain": "GMAIL.test"}, [5, 3, 1]),
        ({"domain": "example.com"}, [4, 2, 0]),
        ({"smtpCode": 451}, [3]),
        ({"smtpCode": 550}, [5]),
        ({"mtaHost": "mx.gmail.test"}, [3]),
        ({"domain": "gmail.test", "types": "email.sent"}, [1]),
    ],
)
def test_domain_smtp_code_and_mta_host_filters(api, read_key, log, params, expected):
    response = api.get(EVENTS, params, **read_key.bearer)

    assert response.status_code == 200
    assert ids(response) == [log[i].public_id for i in expected]


def test_since_takes_an_event_id_an_iso_time_or_epoch_ms(api, read_key, log):
    by_id = api.get(EVENTS, {"since": log[2].public_id}, **read_key.bearer)
    by_iso = api.get(EVENTS, {"since": "2026-03-02T09:03:00Z"}, **read_key.bearer)
    epoch_ms = int((T0 + timedelta(minutes=3)).timestamp() * 1000)
    by_epoch = api.get(EVENTS, {"since": str(epoch_ms)}, **read_key.bearer)

    expected = [log[i].public_id for i in (5, 4, 3)]
    assert ids(by_id) == expected
    assert ids(by_iso) == expected
    assert ids(by_epoch) == expected


def test_since_and_cursor_page_within_the_bound(api, read_key, log):
    first = api.get(EVENTS, {"since": log[1].public_id, "limit": 2}, **read_key.bearer)
    cursor = first.json()["nextCursor"]
    second = api.get(
        EVENTS, {"since": log[1].public_id, "limit": 2, "cursor": cursor}, **read_key.bearer
    )

    assert ids(first) == [log[5].public_id, log[4].public_id]
    assert ids(second) == [log[3].public_id, log[2].public_id]
    assert second.json()["nextCursor"] is None


def test_another_organizations_events_are_never_listed(api, charlie_key, log):
    response = api.get(EVENTS, **charlie_key.bearer)

    assert response.status_code == 200
    assert [event["type"] for event in response.json()["events"]] == ["email.sent"]
    assert not set(ids(response)) & {event.public_id for event in log}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"types": "email.nope"}, "types[0]"),
        ({"types": ["email.sent"] * 21}, "types"),
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "bm9wZQ"}, "cursor"),
        ({"cursor": "x" * 65}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"since": "9999999999999999"}, "since"),
        ({"since": "9999-12-31T23:59:59-05:00"}, "since"),
        ({"smtpCode": 99}, "smtpCode"),
        ({"smtpCode": "5xx"}, "smtpCode"),
        ({"domain": "d" * 256}, "domain"),
        ({"mtaHost": "h" * 256}, "mtaHost"),
    ],
)
def test_a_malformed_parameter_is_a_400_naming_it(api, read_key, params, field):
    response = api.get(EVENTS, params, HTTP_X_REQUEST_ID="req-ev", **read_key.bearer)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["details"]) == [field]


def test_events_need_a_key_and_the_read_sends_scope(api, send_key):
    unauthenticated = api.get(EVENTS, HTTP_X_REQUEST_ID="req-e1")
    forbidden = api.get(EVENTS, HTTP_X_REQUEST_ID="req-e2", **send_key.bearer)

    assert unauthenticated.status_code == 401
    assert unauthenticated["WWW-Authenticate"] == "Bearer"
    assert unauthenticated.json() == problem(401, "invalid_key", "Invalid API key", "req-e1")
    assert forbidden.status_code == 403
    assert forbidden.json() == problem(
        403, "missing_scope", "Forbidden: missing scope read_sends", "req-e2"
    )


def test_a_provider_event_is_recorded_once(acme):
    send = make_send(acme)
    key = events.dedupe_key("<m1@acme.test>", Event.Type.DELIVERED, "esp-evt-1")

    first = events.record(send=send, type=Event.Type.DELIVERED, dedupe=key)
    again = events.record(send=send, type=Event.Type.DELIVERED, dedupe=key)

    assert first is not None and again is None
    assert Event.objects.filter(send=send).count() == 1
    assert EventCounter.objects.get(name="delivered").count == 1


# Metrics -------------------------------------------------------------------------------------


def test_metrics_count_the_window_from_counters(api, read_key, log):
    # A machine open and a second human open and click of the same send: counted, not unique.
    first, second = log[0].send, log[1].send
    record(first, Event.Type.OPENED, at=T0 + timedelta(minutes=7), data={"machine": True})
    record(first, Event.Type.OPENED, at=T0 + timedelta(minutes=8), data={"machine": False})
    record(first, Event.Type.CLICKED, at=T0 + timedelta(minutes=9), data={"url": "u"})
    record(second, Event.Type.DELIVERED, at=T0 + timedelta(minutes=9))
    record(second, Event.Type.COMPLAINED, at=T0 + timedelta(minutes=9))

    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        response = api.get(METRICS, {"window": "24h"}, **read_key.bearer)

    assert response.status_code == 200
    assert response.json() == {
        "window": {
            "preset": "24h",
            "since": "2026-03-01T11:00:00.000Z",
            "until": "2026-03-02T11:00:00.000Z",
        },
        "scanned": {"sends": 2, "sendScanLimit": None},
        "metrics": {
            "totalSent": 2,
            "totalDelivered": 1,
            "deliveryRate": 0.5,
            "totalOpened": 2,
            "uniqueOpens": 1,
            "avgOpenRate": 0.5,
            "totalClicked": 2,
            "uniqueClicks": 1,
            "avgClickRate": 0.5,
            "avgClickToOpenRate": 1.0,
            "totalBounced": 1,
            "bounceRate": 0.5,
            "totalComplained": 1,
            "complaintRate": 0.5,
            "totalDelayed": 1,
            "delayedRate": 0.5,
        },
    }


def test_metrics_windows_and_since(api, read_key, acme):
    send = make_send(acme)
    record(send, Event.Type.SENT, at=T0 - timedelta(days=10))
    record(send, Event.Type.SENT, at=T0 - timedelta(days=3))
    record(send, Event.Type.SENT, at=T0 - timedelta(hours=1))

    def total(**params) -> int:
        with time_machine.travel(T0, tick=False):
            response = api.get(METRICS, params, **read_key.bearer)
        assert response.status_code == 200
        return response.json()["metrics"]["totalSent"]

    assert total() == 1
    assert total(window="7d") == 2
    assert total(window="30d") == 3
    assert total(window="all") == 3
    assert total(since="2026-02-25T00:00:00Z") == 2
    assert total(since=str(int((T0 - timedelta(hours=2)).timestamp() * 1000))) == 1
    with time_machine.travel(T0, tick=False):
        body = api.get(METRICS, {"window": "all"}, **read_key.bearer).json()
    assert body["window"] == {"preset": "all", "since": None, "until": "2026-03-02T09:00:00.000Z"}


def test_metrics_of_an_empty_window_are_zero_rates(api, read_key, charlie_key, log):
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        response = api.get(METRICS, **charlie_key.bearer)
        empty = api.get(METRICS, {"since": "2026-03-02T12:00:00Z"}, **read_key.bearer)

    assert response.json()["metrics"]["totalSent"] == 1
    assert response.json()["metrics"]["deliveryRate"] == 0.0
    assert empty.json()["metrics"]["totalSent"] == 0
    assert empty.json()["metrics"]["avgClickToOpenRate"] == 0.0
    assert empty.json()["window"]["preset"] is None


@pytest.mark.parametrize("params", [{"window": "1y"}, {"since": "soon"}, {"since": "1" * 16}])
def test_metrics_refuse_a_malformed_window(api, read_key, params):
    response = api.get(METRICS, params, **read_key.bearer)

    assert response.status_code == 400
    assert list(response.json()["details"]) == list(params)


def test_metrics_need_the_read_sends_scope(api, send_key):
    assert api.get(METRICS).status_code == 401
    assert api.get(METRICS, **send_key.bearer).status_code == 403


# The timeline's paging -----------------------------------------------------------------------


def test_timeline_pages_its_events_with_limit_and_cursor(api, read_key, acme):
    send = make_send(acme)
    made = [
        record(send, Event.Type.OPENED, at=T0 + timedelta(minutes=i), data={"machine": False})
        for i in range(5)
    ]
    url = f"/api/v1/sends/{send.public_id}"

    first = api.get(url, {"limit": 2}, **read_key.bearer).json()
    second = api.get(url, {"limit": 2, "cursor": first["nextCursor"]}, **read_key.bearer).json()
    epoch_ms = str(int((T0 + timedelta(minutes=1)).timestamp() * 1000))
    by_epoch = api.get(url, {"cursor": epoch_ms}, **read_key.bearer).json()
    by_iso = api.get(url, {"cursor": "2026-03-02T09:01:00Z"}, **read_key.bearer).json()

    assert [e["id"] for e in first["events"]] == [made[4].public_id, made[3].public_id]
    assert first["nextCursor"] == "2026-03-02T09:03:00.000000Z"
    assert [e["id"] for e in second["events"]] == [made[2].public_id, made[1].public_id]
    assert [e["id"] for e in by_epoch["events"]] == [made[0].public_id]
    assert [e["id"] for e in by_iso["events"]] == [made[0].public_id]
    assert by_iso["nextCursor"] is None
    # The summaries cover the whole send, not the page.
    assert first["opens"]["count"] == 5


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"cursor": "later"}])
def test_timeline_refuses_a_malformed_limit_or_cursor(api, read_key, acme, params):
    send = make_send(acme)
    response = api.get(f"/api/v1/sends/{send.public_id}", params, **read_key.bearer)

    assert response.status_code == 400
    assert list(response.json()["details"]) == list(params)


def test_a_send_through_the_api_appears_in_the_events_list(api, alice_key, seed_body):
    sent = api.post("/api/v1/emails/send", seed_body, format="json", **alice_key.bearer).json()

    listed = api.get(EVENTS, **alice_key.bearer).json()["events"]

    assert [(e["type"], e["data"]["sendId"]) for e in listed] == [("email.sent", sent["sendId"])]
    assert listed[0]["data"]["providerMessageId"] == sent["messageId"]
    assert listed[0]["data"]["to"] == "user@example.com"
