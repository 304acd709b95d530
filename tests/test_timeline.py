"""GET /api/v1/sends/{id} (a send's timeline) and GET /api/v1/sends (the list)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from sends import tracking
from sends.models import Event, Message, Policy, Send
from tests.problems import problem

SITE = "https://mail.fluxomail.test"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE


def make_send(organization, at: datetime, **kwargs) -> Send:
    with time_machine.travel(at, tick=False):
        fields = {"endpoint": "send", "to": "reader@example.com", "subject": "Hello"}
        fields.update(kwargs)
        return Send.objects.create(organization=organization, **fields)


# The timeline --------------------------------------------------------------------------------


@pytest.fixture
def delivered(acme) -> Send:
    """A send with one failed and one successful attempt, opened once and clicked twice."""
    Policy.objects.ensure_defaults(acme)
    policy = Policy.objects.get(organization=acme, key="transactional")
    send = make_send(
        acme,
        T0,
        to="Reader <reader@example.com>",
        subject="Your receipt",
        idempotency_key="order-42",
        request_id="req_abc",
        metadata={"orderId": "42"},
        status=Send.Status.SENT,
    )
    html = (
        '<html><body><a href="https://shop.example/order/42?a=1&amp;b=2">Order</a>'
        '<a href="https://shop.example/help">Help</a></body></html>'
    )
    rendered = tracking.inject(html, send=send, policy=policy)
    Message.objects.create(
        send=send,
        from_email="Acme <hello@acme.test>",
        to=["reader@example.com"],
        provider="smtp",
        error="421 4.7.0 Try again later",
        created_at=T0 + timedelta(milliseconds=100),
    )
    message = Message.objects.create(
        send=send,
        from_email="Acme <hello@acme.test>",
        to=["reader@example.com"],
        provider="smtp",
        provider_message_id="<m1@acme.test>",
        html=rendered,
        created_at=T0 + timedelta(milliseconds=300),
    )
    Event.objects.create(
        send=send,
        message=message,
        type=Event.Type.SENT,
        occurred_at=T0 + timedelta(milliseconds=350),
    )
    pixel = re.search(re.escape(SITE) + r"(/t/o/[^\"]+\.gif)", rendered).group(1)
    clicks = re.findall(re.escape(SITE) + r"(/t/c/[^\"]+)", rendered)
    client = Client(HTTP_USER_AGENT="Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15")
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        assert client.get(pixel).status_code == 200
    with time_machine.travel(T0 + timedelta(minutes=11), tick=False):
        assert client.get(clicks[1]).status_code == 302
    with time_machine.travel(T0 + timedelta(minutes=12), tick=False):
        assert client.get(clicks[0]).status_code == 302
    return send


def test_timeline_shows_the_send_its_attempts_and_events_in_order(api, read_key, delivered):
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        response = api.get(f"/api/v1/sends/{delivered.public_id}", **read_key.bearer)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    sent, opened, *clicks = delivered.events.order_by("occurred_at")
    base = {
        "sendId": delivered.public_id,
        "to": "reader@example.com",
        "subject": "Your receipt",
        "metadata": {"orderId": "42"},
    }
    assert response.json() == {
        "send": {
            "id": delivered.public_id,
            "to": "Reader <reader@example.com>",
            "subject": "Your receipt",
            "status": "sent",
            "policy": "transactional",
            "endpoint": "send",
            "idempotencyKey": "order-42",
            "requestId": "req_abc",
            "metadata": {"orderId": "42"},
            "createdAt": "2026-03-02T09:00:00.000Z",
            "updatedAt": "2026-03-02T09:00:00.000Z",
        },
        "messages": [
            {
                "provider": "smtp",
                "from": "Acme <hello@acme.test>",
                "to": ["reader@example.com"],
                "providerMessageId": None,
                "feedbackId": None,
                "error": "421 4.7.0 Try again later",
                "createdAt": "2026-03-02T09:00:00.100Z",
                "bodyPurgedAt": None,
            },
            {
                "provider": "smtp",
                "from": "Acme <hello@acme.test>",
                "to": ["reader@example.com"],
                "providerMessageId": "<m1@acme.test>",
                "feedbackId": None,
                "error": None,
                "createdAt": "2026-03-02T09:00:00.300Z",
                "bodyPurgedAt": None,
            },
        ],
        "events": [
            {
                "id": clicks[1].public_id,
                "type": "email.clicked",
                "created": "2026-03-02T09:12:00.000Z",
                "data": {
                    **base,
                    "providerMessageId": None,
                    "url": "https://shop.example/order/42?a=1&b=2",
                    "position": 0,
                    "userAgentClass": "browser",
                    "machine": False,
                },
            },
            {
                "id": clicks[0].public_id,
                "type": "email.clicked",
                "created": "2026-03-02T09:11:00.000Z",
                "data": {
                    **base,
                    "providerMessageId": None,
                    "url": "https://shop.example/help",
                    "position": 1,
                    "userAgentClass": "browser",
                    "machine": False,
                },
            },
            {
                "id": opened.public_id,
                "type": "email.opened",
                "created": "2026-03-02T09:10:00.000Z",
                "data": {
                    **base,
                    "providerMessageId": None,
                    "userAgentClass": "browser",
                    "machine": False,
                },
            },
            {
                "id": sent.public_id,
                "type": "email.sent",
                "created": "2026-03-02T09:00:00.350Z",
                "data": {**base, "providerMessageId": "<m1@acme.test>"},
            },
        ],
        "nextCursor": None,
        "opens": {
            "count": 1,
            "machineCount": 0,
            "firstAt": "2026-03-02T09:10:00.000Z",
            "lastAt": "2026-03-02T09:10:00.000Z",
        },
        "clicks": {
            "count": 2,
            "machineCount": 0,
            "firstAt": "2026-03-02T09:11:00.000Z",
            "lastAt": "2026-03-02T09:12:00.000Z",
        },
    }


def test_timeline_counts_repeated_opens_and_keeps_the_first(api, read_key, acme):
    send = make_send(acme, T0)
    for minutes, machine in ((1, True), (5, False), (9, False)):
        Event.objects.create(
            send=send,
            type=Event.Type.OPENED,
            occurred_at=T0 + timedelta(minutes=minutes),
            data={"userAgentClass": "browser", "machine": machine},
        )

    body = api.get(f"/api/v1/sends/{send.public_id}", **read_key.bearer).json()

    assert body["opens"] == {
        "count": 3,
        "machineCount": 1,
        "firstAt": "2026-03-02T09:01:00.000Z",
        "lastAt": "2026-03-02T09:09:00.000Z",
    }
    assert body["clicks"] == {"count": 0, "machineCount": 0, "firstAt": None, "lastAt": None}


def test_timeline_without_a_key_is_401(api, acme):
    send = make_send(acme, T0)
    response = api.get(f"/api/v1/sends/{send.public_id}", HTTP_X_REQUEST_ID="req-t1")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == problem(401, "invalid_key", "Invalid API key", "req-t1")


def test_timeline_with_a_send_only_key_is_403(api, send_key, acme):
    send = make_send(acme, T0)
    response = api.get(
        f"/api/v1/sends/{send.public_id}", HTTP_X_REQUEST_ID="req-t2", **send_key.bearer
    )

    assert response.status_code == 403
    assert response.json() == problem(
        403, "missing_scope", "Forbidden: missing scope read_sends", "req-t2"
    )


def test_timeline_of_another_organizations_send_is_404(api, charlie_key, acme):
    send = make_send(acme, T0)
    response = api.get(
        f"/api/v1/sends/{send.public_id}", HTTP_X_REQUEST_ID="req-t3", **charlie_key.bearer
    )

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == problem(404, "not_found", "Not found", "req-t3")


@pytest.mark.parametrize(
    "send_id",
    ["nope", "sends_", "sends_01zzzzzzzzzzzzzzzzzzzzzzzz", "SENDS_01M86ZXJN09SDNZ3PV1T10W50B"],
)
def test_timeline_of_an_unknown_or_malformed_id_is_404(api, read_key, send_id):
    response = api.get(f"/api/v1/sends/{send_id}", **read_key.bearer)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# The list ------------------------------------------------------------------------------------


def test_list_without_a_key_is_401_and_without_scope_403(api, send_key):
    assert api.get("/api/v1/sends").status_code == 401
    response = api.get("/api/v1/sends", **send_key.bearer)
    assert response.status_code == 403
    assert response.json()["message"] == "Forbidden: missing scope read_sends"


def test_list_shows_only_the_callers_sends_newest_first(api, read_key, acme, globex):
    older = make_send(acme, T0)
    newer = make_send(acme, T0 + timedelta(seconds=1), status=Send.Status.SENT)
    make_send(globex, T0 + timedelta(seconds=2))

    response = api.get("/api/v1/sends", **read_key.bearer)

    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "id": newer.public_id,
                "to": "reader@example.com",
                "subject": "Hello",
                "status": "sent",
                "policy": "transactional",
                "endpoint": "send",
                "idempotencyKey": None,
                "requestId": None,
                "metadata": {},
                "createdAt": "2026-03-02T09:00:01.000Z",
                "updatedAt": "2026-03-02T09:00:01.000Z",
            },
            {
                "id": older.public_id,
                "to": "reader@example.com",
                "subject": "Hello",
                "status": "pending",
                "policy": "transactional",
                "endpoint": "send",
                "idempotencyKey": None,
                "requestId": None,
                "metadata": {},
                "createdAt": "2026-03-02T09:00:00.000Z",
                "updatedAt": "2026-03-02T09:00:00.000Z",
            },
        ],
        "nextCursor": None,
    }


def test_pagination_walks_every_send_once_while_new_sends_arrive(api, read_key, acme):
    existing = [make_send(acme, T0 + timedelta(seconds=n)) for n in range(10)]
    seen: list[str] = []
    cursor = None
    later = T0 + timedelta(minutes=1)
    pages = 0
    while True:
        query = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        body = api.get("/api/v1/sends", query, **read_key.bearer).json()
        seen.extend(item["id"] for item in body["data"])
        pages += 1
        # New mail goes out between every two pages.
        make_send(acme, later + timedelta(seconds=pages))
        make_send(acme, later + timedelta(seconds=pages, milliseconds=500))
        cursor = body["nextCursor"]
        if cursor is None:
            break

    assert seen == [send.public_id for send in reversed(existing)]
    assert pages == 4
    assert Send.objects.count() == 18


def test_list_filters_by_status_endpoint_recipient_and_dates(api, read_key, acme):
    a = make_send(acme, T0, to="Ann <ann@example.com>", status=Send.Status.SENT)
    b = make_send(acme, T0 + timedelta(days=1), to="bob@example.com", endpoint="send-global")
    c = make_send(acme, T0 + timedelta(days=2), to="ann@example.com", status=Send.Status.FAILED)

    def ids(**query):
        response = api.get("/api/v1/sends", query, **read_key.bearer)
        assert response.status_code == 200, response.json()
        return [item["id"] for item in response.json()["data"]]

    assert ids(status="sent") == [a.public_id]
    assert ids(status="failed") == [c.public_id]
    assert ids(endpoint="send-global") == [b.public_id]
    assert ids(to="ANN@example.com") == [c.public_id, a.public_id]
    assert ids(**{"from": "2026-03-03"}) == [c.public_id, b.public_id]
    assert ids(until="2026-03-03") == [b.public_id, a.public_id]
    assert ids(**{"from": "2026-03-03T00:00:00Z", "until": "2026-03-03T12:00:00+02:00"}) == [
        b.public_id
    ]
    assert ids(to="ann@example.com", status="sent") == [a.public_id]


def test_until_the_last_day_of_year_9999_lists_every_send(api, read_key, acme):
    send = make_send(acme, T0)

    for query in ({"until": "9999-12-31"}, {"from": "2026-03-02", "until": "9999-12-31"}):
        response = api.get("/api/v1/sends", query, **read_key.bearer)

        assert response.status_code == 200, response.content
        assert [item["id"] for item in response.json()["data"]] == [send.public_id]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"limit": "0"}, "limit", "Ensure this value is greater than or equal to 1."),
        ({"limit": "101"}, "limit", "Ensure this value is less than or equal to 100."),
        ({"limit": "ten"}, "limit", "A valid integer is required."),
        ({"cursor": "not-a-cursor"}, "cursor", "Invalid cursor."),
        ({"status": "lost"}, "status", '"lost" is not a valid choice.'),
        ({"endpoint": "other"}, "endpoint", '"other" is not a valid choice.'),
        (
            {"from": "yesterday"},
            "from",
            "Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
        ),
        (
            {"until": "2026-03-01T00:00:00.000000000000000+00:00"},
            "until",
            "Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
        ),
        ({"from": "2026-03-05", "until": "2026-03-01"}, "until", "Must be after from."),
        ({"from": "9999-12-31T23:00:00-02:00"}, "from", "Datetime value out of range."),
        ({"until": "0001-01-01T00:00:00+01:00"}, "until", "Datetime value out of range."),
        ({"cursor": "A" * 65}, "cursor", "Ensure this field has no more than 64 characters."),
        ({"to": "a" * 321}, "to", "Ensure this field has no more than 320 characters."),
    ],
)
def test_list_rejects_bad_parameters_with_400(api, read_key, query, field, message):
    response = api.get("/api/v1/sends", query, HTTP_X_REQUEST_ID="req-l1", **read_key.bearer)

    assert response.status_code == 400
    assert response.json() == problem(
        400,
        "validation_error",
        f"{field}: {message}",
        "req-l1",
        details={field: [message]},
    )


# End to end ----------------------------------------------------------------------------------


def test_a_send_an_open_and_two_clicks_through_the_api_show_up_in_the_timeline(
    api, alice_key, mailoutbox
):
    body = {
        "to": "reader@example.com",
        "subject": "Your order",
        "content": "See https://shop.example/order/42",
        "htmlContent": (
            "<html><head><style>a { color: #0066cc }</style></head><body>"
            '<p>Thanks!</p><a href="https://shop.example/order/42?a=1&amp;b=2">Order</a> '
            '<a href="https://shop.example/help">Help</a> '
            '<a href="https://shop.example/unsubscribe">Unsubscribe</a></body></html>'
        ),
        "metadata": {"orderId": "42"},
    }
    with time_machine.travel(T0, tick=False):
        response = api.post(
            "/api/v1/emails/send",
            body,
            format="json",
            HTTP_X_REQUEST_ID="req-e2e",
            **alice_key.bearer,
        )
    assert response.status_code == 200, response.content
    sent = response.json()
    (mail,) = mailoutbox
    ((html, mimetype),) = mail.alternatives
    assert mimetype == "text/html"
    pixel = re.search(re.escape(SITE) + r"(/t/o/[^\"]+\.gif)", html).group(1)
    clicks = re.findall(re.escape(SITE) + r"(/t/c/[^\"]+)", html)
    assert len(clicks) == 2
    assert 'href="https://shop.example/unsubscribe"' in html

    reader = Client(HTTP_USER_AGENT="Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 Mobile/15E148")
    with time_machine.travel(T0 + timedelta(minutes=3), tick=False):
        assert reader.get(pixel).status_code == 200
    with time_machine.travel(T0 + timedelta(minutes=4), tick=False):
        first = reader.get(clicks[0])
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        second = reader.get(clicks[1])
    assert first["Location"] == "https://shop.example/order/42?a=1&b=2"
    assert second["Location"] == "https://shop.example/help"

    timeline = api.get(f"/api/v1/sends/{sent['sendId']}", **alice_key.bearer).json()

    assert timeline["send"]["id"] == sent["sendId"]
    assert timeline["send"]["status"] == "sent"
    assert timeline["send"]["requestId"] == "req-e2e"
    assert timeline["send"]["metadata"] == {"orderId": "42"}
    assert timeline["send"]["createdAt"] == "2026-03-02T09:00:00.000Z"
    assert [m["providerMessageId"] for m in timeline["messages"]] == [sent["messageId"]]
    assert timeline["messages"][0]["error"] is None
    assert [(e["type"], e["created"]) for e in timeline["events"]] == [
        ("email.clicked", "2026-03-02T09:05:00.000Z"),
        ("email.clicked", "2026-03-02T09:04:00.000Z"),
        ("email.opened", "2026-03-02T09:03:00.000Z"),
        ("email.sent", "2026-03-02T09:00:00.000Z"),
    ]
    assert [e["data"]["providerMessageId"] for e in timeline["events"]] == [
        None,
        None,
        None,
        sent["messageId"],
    ]
    assert [e["data"].get("url") for e in timeline["events"][:2]] == [
        "https://shop.example/help",
        "https://shop.example/order/42?a=1&b=2",
    ]
    assert timeline["opens"]["count"] == 1
    assert timeline["opens"]["firstAt"] == "2026-03-02T09:03:00.000Z"
    assert timeline["clicks"]["count"] == 2

    listed = api.get("/api/v1/sends", {"to": "reader@example.com"}, **alice_key.bearer).json()
    assert [item["id"] for item in listed["data"]] == [sent["sendId"]]
