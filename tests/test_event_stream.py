"""GET /api/v1/events/stream (SPEC.md section 8): Server-Sent Events of the organization's events.

Credential, scope, paused organization and parameters are checked in-process (a problem answer
before any stream starts). The stream itself is read by a real SSE client over HTTP from live
servers on the test's PostgreSQL database: uvicorn (ASGI, as production serves it) and Django's
runserver (what `make run` starts), with mail sent through the API to an SMTP sink while the
client listens. Credentials in query strings are looked for in every server's log output.
"""

import io
import json
import logging
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest
import time_machine
from django.utils.log import ServerFormatter

from fluxomail.ids import new_id
from fluxomail.log_redaction import redact
from sends import events
from sends.models import Event, Send
from sends.stream import STREAM_PAGE, Poller, Published, Stream, deliver
from tests.conftest import SEED_BODY
from tests.problems import problem

STREAM = "/api/v1/events/stream"
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def assert_problem(response, status: int, code: str, message: str, details=None) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert not response.streaming
    assert response.json() == problem(status, code, message, response["X-Request-Id"], details)


def assert_invalid(response) -> None:
    assert_problem(response, 401, "invalid_key", "Invalid API key")
    assert response["WWW-Authenticate"] == "Bearer"


def mint(api, key, **body) -> str:
    response = api.post("/api/v1/tokens", body, format="json", **key.bearer)
    assert response.status_code == 200
    return response.json()["token"]


# Refused before any stream starts (in-process) ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        {},
        {"token": ""},
        {"token": "flxt_nope"},
        {"token": "flx_AbCd1234_" + "x" * 40},
        {"types": "email.sent"},
    ],
)
def test_a_missing_or_bad_credential_is_401_before_any_stream(api, read_key, query):
    assert_invalid(api.get(STREAM, query, HTTP_ACCEPT="text/event-stream"))


@pytest.mark.django_db
def test_a_bad_header_credential_is_401_even_with_a_good_query_token(api, read_key):
    response = api.get(STREAM, {"token": read_key.token}, HTTP_AUTHORIZATION="Bearer nope")
    assert_invalid(response)


@pytest.mark.django_db
def test_an_expired_token_is_401(api, read_key):
    with time_machine.travel(T0, tick=False):
        token = mint(api, read_key, ttlSeconds=1)
    with time_machine.travel(T0 + timedelta(seconds=1), tick=False):
        assert_invalid(api.get(STREAM, {"token": token}))


@pytest.mark.django_db
def test_a_token_of_a_revoked_key_is_401(api, read_key):
    token = mint(api, read_key)
    read_key.key.revoke()
    assert_invalid(api.get(STREAM, {"token": token}))


@pytest.mark.django_db
def test_a_key_or_token_without_read_sends_is_403(api, send_key, alice_key):
    response = api.get(STREAM, {"token": send_key.token})
    assert_problem(response, 403, "missing_scope", "Forbidden: missing scope read_sends")
    token = mint(api, alice_key, scopes=["send_email"])
    response = api.get(STREAM, {"token": token})
    assert_problem(response, 403, "missing_scope", "Forbidden: missing scope read_sends")


@pytest.mark.django_db
def test_a_paused_organization_is_403(api, read_key):
    read_key.key.organization.pause()
    response = api.get(STREAM, **read_key.bearer)
    assert_problem(response, 403, "tenant_paused", "Tenant paused for this organization")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "headers", "details"),
    [
        ({"types": "email.nope"}, {}, {"types[0]": ['"email.nope" is not a valid choice.']}),
        (
            {"since": "yesterday"},
            {},
            {"since": ["Must be an event id, an ISO 8601 date-time or epoch milliseconds."]},
        ),
        (
            {},
            {"HTTP_LAST_EVENT_ID": "evt_nope"},
            {
                "Last-Event-ID": [
                    "Must be an event id, an ISO 8601 date-time or epoch milliseconds."
                ]
            },
        ),
        (
            {"smtpCode": "99"},
            {},
            {"smtpCode": ["Ensure this value is greater than or equal to 100."]},
        ),
    ],
)
def test_invalid_parameters_are_400_naming_them(api, read_key, query, headers, details):
    response = api.get(STREAM, query, **read_key.bearer, **headers)
    ((field, reasons),) = details.items()
    message = f"{field}: {reasons[0]}"
    assert_problem(response, 400, "validation_error", message, details)


@pytest.mark.django_db
def test_only_get_opens_a_stream(api, read_key):
    response = api.post(STREAM, {}, format="json", **read_key.bearer)
    assert response.status_code == 405
    assert api.head(STREAM, **read_key.bearer).status_code == 405


# The stream in-process: a WSGI request without threads (as on gunicorn's sync workers) -----


def blocks(response) -> list[str]:
    """The SSE blocks of a streaming response that ends."""
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("\n\n")
    return text.removesuffix("\n\n").split("\n\n")


@contextmanager
def settled():
    """A second on: every event recorded so far is older than the settle time (ids carry
    milliseconds, and a request can come within the millisecond of the last event)."""
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=1)):
        yield


def frame(event: Event) -> str:
    data = json.dumps(events.envelope(event), separators=(",", ":"))
    return f"id: {event.public_id}\ndata: {data}"


@pytest.fixture
def stored(alice, charlie):
    """Five events of Acme (sent, failed, sent, opened, sent) and one of Globex, oldest first."""
    out = []
    for index, kind in enumerate(["email.sent", "email.failed", "email.sent", "email.opened"]):
        send = Send.objects.create(
            organization=alice.organization,
            endpoint="send",
            to=f"reader{index}@{'example.com' if index % 2 else 'other.test'}",
            subject=f"Hello {index}",
            metadata={"n": str(index)},
        )
        out.append(events.record(send=send, type=kind))
        other = Send.objects.create(
            organization=charlie.organization, endpoint="send", to="x@example.com", subject="x"
        )
        events.record(send=other, type="email.sent")
    return out


@pytest.mark.django_db
def test_catch_up_sends_the_events_after_since_in_order_then_ends_without_threads(
    client, read_key, stored
):
    with settled():
        response = client.get(STREAM, {"since": stored[0].public_id, "token": read_key.token})
        sent = blocks(response)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert sent == ["retry: 2000", *[frame(event) for event in stored[1:]]]


@pytest.mark.django_db
def test_catch_up_pages_through_more_events_than_one_query_reads(client, read_key, alice):
    send = Send.objects.create(organization=alice.organization, endpoint="send", to="a@b.test")
    recorded = [events.record(send=send, type="email.opened") for _ in range(STREAM_PAGE + 5)]
    with settled():
        sent = blocks(client.get(STREAM, {"since": "0"}, **read_key.bearer))
    assert sent == ["retry: 2000", *[frame(event) for event in recorded]]


@pytest.mark.django_db
def test_catch_up_honours_the_filters_and_last_event_id_over_since(client, read_key, stored):
    with settled():
        response = client.get(
            f"{STREAM}?types=email.sent&types=email.opened&domain=other.test&since=0",
            HTTP_LAST_EVENT_ID=stored[0].public_id,
            **read_key.bearer,
        )
        sent = blocks(response)
    # since=0 would include stored[0]; Last-Event-ID (the browser's reconnect) wins.
    assert sent == ["retry: 2000", frame(stored[2])]


@pytest.mark.django_db
def test_catch_up_leaves_out_ids_younger_than_the_settle_time(client, read_key, stored, settings):
    # The poller publishes those once no earlier id can still commit; so does the catch-up.
    settings.STREAM_SETTLE_SECONDS = 60.0
    with settled():
        sent = blocks(client.get(STREAM, {"since": "0"}, **read_key.bearer))
    assert sent == ["retry: 2000"]


# What a stream sends, and the poller --------------------------------------------------------


def item(public_id: str) -> Published:
    return Published(public_id, 0, None, f'{{"id":"{public_id}"}}')


@pytest.mark.django_db
def test_a_late_event_is_sent_once_without_an_id_and_older_ones_not_at_all(acme):
    before, a, b, c = (new_id("evt") for _ in range(4))  # increasing
    stream = Stream(organization=acme, key_id=1, params={"since": (before, True)})
    stream.subscriber.organization_id = 0
    stream.subscriber.offer([item(before), item(a), item(c)])
    assert stream.live() == f"id: {a}\ndata: {item(a).data}\n\nid: {c}\ndata: {item(c).data}\n\n"
    # b commits after c was sent: sent without `id:`, so Last-Event-ID stays at c.
    stream.subscriber.offer([item(b), item(c)])
    assert stream.live() == f"data: {item(b).data}\n\n"
    stream.subscriber.offer([item(b)])
    assert stream.live() == ""


@pytest.mark.django_db
def test_events_in_order_are_sent_with_their_ids_and_remembered(acme):
    a, b, c, d = (new_id("evt") for _ in range(4))  # increasing
    stream = Stream(organization=acme, key_id=1, params={})
    stream.subscriber.organization_id = 0
    stream.subscriber.offer([item(a), item(b)])
    stream.subscriber.offer([item(d)])
    assert stream.live() == "".join(f"id: {x}\ndata: {item(x).data}\n\n" for x in (a, b, d))
    assert stream.last == d
    # c committed late: it goes without an id (Last-Event-ID stays at d), and is remembered, so
    # that it is not sent again; the poller hands out each id once, in order, so those sent in
    # order need no memory.
    stream.subscriber.offer([item(c)])
    assert stream.live() == f"data: {item(c).data}\n\n"
    stream.subscriber.offer([item(c)])
    assert stream.live() == ""
    assert stream.last == d and list(stream.sent) == [c]


@pytest.mark.django_db
def test_one_poll_is_filtered_once_per_organization_and_filters(acme):
    ours, theirs = acme.pk, acme.pk + 1
    event_ids = [new_id("evt") for _ in range(3)]
    published = [
        Published(event_ids[0], ours, Event(type="email.sent"), "{}"),
        Published(event_ids[1], ours, Event(type="email.delivered"), "{}"),
        Published(event_ids[2], theirs, Event(type="email.sent"), "{}"),
    ]
    streams = [
        Stream(organization=acme, key_id=1, params={}),
        Stream(organization=acme, key_id=2, params={}),
        Stream(organization=acme, key_id=3, params={"types": ["email.delivered"]}),
    ]
    calls = []
    for stream in streams:
        matches = stream.subscriber.matches
        stream.subscriber.matches = lambda event, matches=matches: calls.append(1) or matches(event)
    deliver([stream.subscriber for stream in streams], published)
    taken = [[p.public_id for p in stream.subscriber.take()[0]] for stream in streams]
    assert taken == [event_ids[:2], event_ids[:2], event_ids[1:2]]
    # Two distinct filter sets, each run on our organization's two events: not three times.
    assert len(calls) == 4


@pytest.mark.django_db
def test_a_subscriber_whose_queue_overflows_ends(acme, settings):
    settings.STREAM_QUEUE_MAX = 2
    stream = Stream(organization=acme, key_id=1, params={})
    stream.subscriber.organization_id = 0
    stream.subscriber.offer([item(new_id("evt")) for _ in range(2)])
    assert not stream.subscriber.ended
    stream.subscriber.offer([item(new_id("evt"))])
    assert stream.subscriber.ended
    assert stream.subscriber.take() == ([], True)


@pytest.mark.django_db
def test_the_poller_publishes_settled_events_once_and_late_commits_when_they_appear(
    alice, charlie, settings
):
    settings.STREAM_LOOKBACK_SECONDS = 5.0
    ours = Send.objects.create(organization=alice.organization, endpoint="send", to="a@b.test")
    theirs = Send.objects.create(organization=charlie.organization, endpoint="send", to="c@d.test")
    poller = Poller()
    first = events.record(send=ours, type="email.sent")
    events.record(send=theirs, type="email.sent")
    with settled():
        assert [p.public_id for p in poller.poll({alice.organization.pk})] == [first.public_id]
        assert poller.poll({alice.organization.pk}) == []
    now_ms = int(time.time() * 1000)
    # An id made 2 s ago that commits only now: within the look-back, published now.
    late = Event.objects.create(
        public_id=new_id("evt", at_ms=now_ms - 2000), send=ours, type="email.opened"
    )
    # One made before the look-back window: left to catch-ups.
    Event.objects.create(
        public_id=new_id("evt", at_ms=now_ms - 9000), send=ours, type="email.opened"
    )
    with settled():
        [published] = poller.poll({alice.organization.pk})
    assert published.public_id == late.public_id
    assert published.data == json.dumps(events.envelope(late), separators=(",", ":"))
    settings.STREAM_SETTLE_SECONDS = 60.0
    events.record(send=ours, type="email.sent")
    with settled():
        assert poller.poll({alice.organization.pk}) == []


# Live servers -------------------------------------------------------------------------------


def live(test):
    """Marks of a test against live servers: their rows must be committed to be seen."""
    marks = (pytest.mark.postgres, pytest.mark.reliability, pytest.mark.django_db(transaction=True))
    for mark in marks:
        test = mark(test)
    return test


SERVER_ENV = {
    "STREAM_PING_SECONDS": "0.5",
    "STREAM_RECHECK_SECONDS": "0.5",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def smtp_sink():
    from tests.servers import FaultySmtp

    with FaultySmtp() as sink:
        yield sink


@pytest.fixture(scope="module")
def asgi(django_db_setup, django_db_blocker, smtp_sink):
    """One uvicorn instance (one worker) for the module: the ASGI application."""
    from tests.servers import LiveServers

    with django_db_blocker.unblock():
        servers = LiveServers(
            count=1, kind="uvicorn", workers=1, smtp_port=smtp_sink.port, env=SERVER_ENV
        )
    with servers:
        yield servers[0]


@pytest.fixture
def smtp(smtp_sink):
    smtp_sink.mode = "accept"
    yield smtp_sink
    smtp_sink.mode = "accept"


def send(server, key, to: str = "user@example.com") -> str:
    reply = server.request(
        "POST",
        "/api/v1/emails/send",
        body={**SEED_BODY, "to": to},
        headers={"Authorization": f"Bearer {key.token}"},
    )
    return reply.json()["sendId"] if reply.status == 200 else reply.json().get("sendId")


def stream_path(**query) -> str:
    pairs = [(name, v) for name, value in query.items() for v in _values(value)]
    return STREAM + ("?" + urlencode(pairs) if pairs else "")


def _values(value):
    return value if isinstance(value, list) else [value]


def connect(server, key=None, *, headers=None, **query):
    """An SSE client on the stream, once the stream has started (its `retry` field read)."""
    from tests.servers import SseClient

    if key is not None and "token" not in query:
        headers = {"Authorization": f"Bearer {key.token}", **(headers or {})}
    client = SseClient(server, stream_path(**query), headers)
    assert client.status == 200, (client.response.read(), server.log.read_text()[-3000:])
    assert client.block().lines == ["retry: 2000"]
    return client


def event_of(send_id: str) -> Event:
    return Event.objects.select_related("send", "message").get(send__public_id=send_id)


@live
def test_the_envelope_of_a_send_made_while_connected_arrives(asgi, smtp, read_key, send_key):
    with connect(asgi, read_key) as client:
        assert client.headers["Content-Type"] == "text/event-stream"
        send_id = send(asgi, send_key)
        [block] = client.events(1)
        event = event_of(send_id)
        assert block.lines == [f"id: {event.public_id}", f"data: {block.data}"]
        assert block.json() == events.envelope(event)
        assert block.json()["type"] == "email.sent"
        assert block.json()["data"]["sendId"] == send_id
        assert client.events_until_ping() == []


@live
def test_reconnecting_with_last_event_id_sends_what_was_missed_once_then_live_events(
    asgi, smtp, read_key, send_key
):
    with connect(asgi, read_key) as client:
        first = send(asgi, send_key)
        [seen] = client.events(1)
    missed = [send(asgi, send_key) for _ in range(3)]
    # The EventSource reconnects to its first URL (an old `since` included) with the header.
    headers = {"Last-Event-ID": seen.id}
    with connect(asgi, read_key, headers=headers, since="0") as client:
        caught_up = client.events(3)
        assert [b.json()["data"]["sendId"] for b in caught_up] == missed
        assert [b.id for b in caught_up] == sorted(b.id for b in caught_up)
        live = send(asgi, send_key)
        [block] = client.events(1)
        assert block.json()["data"]["sendId"] == live
        assert client.events_until_ping() == []
    assert first not in missed + [live]


@live
def test_reconnecting_with_since_in_each_form_resumes_after_it(asgi, smtp, read_key, send_key):
    before = send(asgi, send_key)
    after = [send(asgi, send_key) for _ in range(2)]
    # Recorded at or after this millisecond (the send before ended earlier).
    millis = int(event_of(after[0]).occurred_at.timestamp() * 1000)
    forms = {
        "id": event_of(before).public_id,
        "iso": datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z"),
        "epoch ms": str(millis),
    }
    for form, since in forms.items():
        with connect(asgi, read_key, since=since) as client:
            blocks = client.events(2)
            assert [b.json()["data"]["sendId"] for b in blocks] == after, form
            assert client.events_until_ping() == [], form


@live
def test_types_filter_sends_only_the_named_types(asgi, smtp, read_key, send_key):
    with connect(asgi, read_key, types=["email.failed", "email.bounced"]) as client:
        send(asgi, send_key)  # email.sent: filtered out
        smtp.mode, smtp.reply = "reply", "550 5.1.1 No such user"
        failed = send(asgi, send_key)
        [block] = client.events(1)
        assert block.json()["type"] == "email.failed"
        assert block.json()["data"]["sendId"] == failed
        assert client.events_until_ping() == []


@live
def test_another_organizations_events_never_arrive(asgi, smtp, read_key, send_key, charlie_key):
    with connect(asgi, read_key) as client, connect(asgi, charlie_key) as other:
        theirs = send(asgi, charlie_key)
        ours = send(asgi, send_key)
        # Events are published in id order: theirs would come before ours.
        [block] = client.events(1)
        assert block.json()["data"]["sendId"] == ours
        assert client.events_until_ping() == []
        [block] = other.events(1)
        assert block.json()["data"]["sendId"] == theirs
    # Nor through a catch-up.
    with connect(asgi, read_key, since="0") as client:
        assert [b.json()["data"]["sendId"] for b in client.events_until_ping()] == [ours]


@live
def test_an_idle_stream_sends_ping_comments(asgi, read_key):
    with connect(asgi, read_key) as client:
        assert client.block().lines == [": ping"]
        assert client.block().lines == [": ping"]


@live
def test_a_short_lived_token_in_the_query_opens_the_stream(asgi, smtp, read_key, send_key):
    reply = asgi.request(
        "POST",
        "/api/v1/tokens",
        body={"ttlSeconds": 60, "scopes": ["read_sends"]},
        headers={"Authorization": f"Bearer {read_key.token}"},
    )
    token = reply.json()["token"]
    with connect(asgi, token=token) as client:
        send_id = send(asgi, send_key)
        [block] = client.events(1)
        assert block.json()["data"]["sendId"] == send_id
    assert token not in asgi.log.read_text()
    assert f"{STREAM}?token=[redacted]" in asgi.log.read_text()


@live
def test_bad_credentials_are_401_problems_before_any_stream_over_http(asgi, read_key):
    from tests.servers import SseClient

    for path in (STREAM, stream_path(token="flxt_nope"), stream_path(token=read_key.token + "x")):
        with SseClient(asgi, path) as client:
            assert client.status == 401
            assert client.headers["Content-Type"] == "application/json"
            assert client.headers["WWW-Authenticate"] == "Bearer"
            body = json.loads(client.response.read())
            assert body == problem(
                401, "invalid_key", "Invalid API key", client.headers["X-Request-Id"]
            )


@live
def test_revoking_the_key_ends_its_open_streams(asgi, alice, make_key):
    key = make_key(alice.organization, scopes=["read_sends"])
    with connect(asgi, key) as client:
        key.key.revoke()
        with pytest.raises(EOFError):
            while True:
                client.block()


@pytest.fixture
def limited_role():
    """A PostgreSQL role allowed 6 connections, with the test database's rows (superusers are
    not held to connection limits)."""
    from django.db import connection

    name = "flx_stream_limited"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {name}")
        cursor.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT 6")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}")
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {name}")
        cursor.execute(f"DROP ROLE {name}")


@live
def test_a_burst_of_connecting_streams_shares_a_few_database_connections(
    smtp, read_key, limited_role
):
    from tests.servers import LiveServers, concurrently, database_url

    # 2 slots and the poller's connection: within the role's 6, however many streams connect.
    url = database_url().replace("postgres://postgres@", f"postgres://{limited_role}@")
    env = {**SERVER_ENV, "DATABASE_URL": url, "STREAM_DB_CONNECTIONS": "2"}
    with LiveServers(count=1, kind="uvicorn", workers=1, env=env) as servers:
        clients = concurrently([lambda: connect(servers[0], read_key, since="0")] * 40)
        for client in clients:
            client.close()


# runserver (`make run`) ----------------------------------------------------------------------


@live
def test_the_stream_works_under_runserver_and_its_log_redacts_the_token(smtp, read_key, send_key):
    from tests.servers import LiveServers, SseClient

    with LiveServers(count=1, kind="runserver", smtp_port=smtp.port, env=SERVER_ENV) as servers:
        server = servers[0]
        with connect(server, token=read_key.token) as client:
            send_id = send(server, send_key)
            [block] = client.events(1)
            assert block.json()["data"]["sendId"] == send_id
        # Refused requests are logged once answered, query string included.
        for path, status in (
            (stream_path(token=read_key.token, types="x"), 400),
            (stream_path(token="flxt_" + "x" * 40), 401),
        ):
            with SseClient(server, path) as client:
                assert client.status == status
                client.response.read()
        log = wait_for_log(server, f'"GET {STREAM}?token=[redacted] HTTP/1.1" 401')
    assert f'"GET {STREAM}?token=[redacted]&types=x HTTP/1.1" 400' in log
    assert read_key.token.rsplit("_", 1)[1] not in log
    assert "x" * 40 not in log


def wait_for_log(server, text: str, limit: float = 10.0) -> str:
    """The server's log once it holds `text` (a server writes a request's line after
    answering it); a bounded wait, not an assertion on time."""
    deadline = time.monotonic() + limit
    while text not in (log := server.log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in log, log[-3000:]
    return log


# Credentials in query strings never reach a log ---------------------------------------------


@live
def test_gunicorns_access_log_redacts_credentials_in_query_strings(read_key):
    from tests.servers import LiveServers

    encoded = quote(read_key.token)
    with LiveServers(count=1) as servers:
        server = servers[0]
        for path in (
            f"/api/v1/events?token={read_key.token}&limit=1",
            f"/api/v1/events?api_key={read_key.token}",
            f"/api/v1/events?tok%65n={encoded}",
        ):
            assert server.request("GET", path).status == 401
        log = wait_for_log(server, '"GET /api/v1/events HTTP/1.1" 401')
    # gunicorn.conf.py logs the path without its query string; the redacting logger is the
    # second line of defence for any other format an operator chooses (tested below).
    assert "?tok" not in log and "api_key" not in log
    assert read_key.token.rsplit("_", 1)[1] not in log


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '"GET /api/v1/events/stream?types=email.sent&token=flxt_abc.def HTTP/1.1" 200',
            '"GET /api/v1/events/stream?types=email.sent&token=[redacted] HTTP/1.1" 200',
        ),
        ("GET /s?TOKEN=abc;key=def&x=1", "GET /s?TOKEN=[redacted];key=[redacted]&x=1"),
        ("GET /s?Api%5FKey=abc&api-key=d", "GET /s?Api%5FKey=[redacted]&api-key=[redacted]"),
        ("GET /s?next=/x?token=abc", "GET /s?next=/x?token=[redacted]"),
        ("GET /s?q=flx_AbCd1234_" + "a" * 40, "GET /s?q=[redacted]"),
        ("GET /s?q=flxt%5F" + "a" * 30, "GET /s?q=[redacted]"),
        ("key flx_AbCd1234 used", "key flx_AbCd1234 used"),
        ("GET /api/v1/events?limit=5&cursor=abc", "GET /api/v1/events?limit=5&cursor=abc"),
    ],
)
def test_redaction_rewrites_credential_values_and_nothing_else(line, expected):
    assert redact(line) == expected


def test_the_logging_configuration_redacts_runservers_request_lines():
    token = "flx_AbCd1234_" + "s" * 40
    logger = logging.getLogger("django.server")
    [handler] = [h for h in logger.handlers if isinstance(h.formatter, ServerFormatter)]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logger.info('"%s" %s %s', f"GET /x?token={token} HTTP/1.1", 200, 5)
    finally:
        handler.setStream(previous)
    assert stream.getvalue().endswith('] "GET /x?token=[redacted] HTTP/1.1" 200 5\n')
