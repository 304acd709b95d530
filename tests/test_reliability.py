"""The send API under load and faults, against live gunicorn servers (tests/servers.py).

Two instances share the test's PostgreSQL database and Redis, as two hosts behind a load
balancer would. Each fault has one decided outcome, asserted here and listed in the README's
Reliability section:

- SMTP down, SMTP slower than the timeout, SMTP refusing (550) or deferring (451) the
  recipient: 500 `internal_error` naming the sendId; the send is `failed` with the attempt's
  error; a retry with the same key tries again on the same send.
- Redis unreachable: RATELIMIT_FAIL_OPEN=true sends without a cap; false answers 503 and
  sends and stores nothing.
- PostgreSQL connections dropped under load: each request either succeeds fully or fails
  cleanly with a 5xx; no 200 without a sent send and its delivered message, no delivered
  message without a send row; the servers recover by themselves.
- A worker SIGKILLed while it holds a key: the key answers 409 until the lock timeout, then the
  retry takes it over and delivers exactly once.
"""

import json
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import connection
from django_ratelimit.core import _get_window

from sends.models import IdempotencyRecord, Message, Send
from tests.conftest import SEED_BODY, free_port
from tests.servers import FaultySmtp, LiveServers, concurrently

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

SEND = "/api/v1/emails/send"


def headers(token: str, key: str | None = None) -> dict:
    out = {"Authorization": f"Bearer {token}"}
    if key is not None:
        out["Idempotency-Key"] = key
    return out


@pytest.fixture
def smtp():
    with FaultySmtp() as sink:
        yield sink


def header_value(envelope, name: str) -> str:
    for line in envelope.content.decode("utf-8", "replace").splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def message_ids(sink: FaultySmtp) -> list[str]:
    return [header_value(envelope, "Message-ID") for envelope in sink.messages]


def assert_problem(reply, status: int, code: str) -> dict:
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers["Content-Type"] == "application/problem+json"
    body = reply.json()
    assert body["code"] == code
    assert body["requestId"] == reply.headers["X-Request-Id"]
    return body


# -- two instances, one database, one Redis ---------------------------------------------------


def test_one_key_sent_100_times_over_two_instances_delivers_one_email(send_key, smtp):
    with LiveServers(count=2, smtp_port=smtp.port) as servers:
        calls = [
            lambda server=servers[i % 2]: server.request(
                "POST", SEND, body=SEED_BODY, headers=headers(send_key.token, "one-key")
            )
            for i in range(100)
        ]
        replies = concurrently(calls, max_workers=50)

    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {200, 409}, statuses
    assert statuses[200] >= 1
    bodies = [reply.json() for reply in replies if reply.status == 200]
    assert len({body["sendId"] for body in bodies}) == 1
    assert sum(not body["reused"] for body in bodies) == 1
    for reply in replies:
        if reply.status == 409:
            assert reply.json()["code"] == "idempotency_in_progress"
            assert reply.headers["Retry-After"] == "1"
    assert len(smtp.messages) == 1
    assert Send.objects.count() == 1
    assert Send.objects.get().status == Send.Status.SENT
    assert Message.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED


def _wait_for_a_fresh_window(public_id: str, needed: int = 15) -> None:
    """django-ratelimit's fixed window must not end during the burst: wait for the next one
    when fewer than `needed` seconds are left (a wait, never an assertion on time)."""
    left = _get_window(public_id, 60) - time.time()
    if left < needed:
        time.sleep(left + 0.5)


def test_per_minute_cap_of_20_holds_exactly_across_two_instances(alice, make_key, smtp):
    capped = make_key(alice.organization, rate_limit=20, name="capped")
    _wait_for_a_fresh_window(capped.key.public_id)
    with LiveServers(count=2, smtp_port=smtp.port) as servers:
        calls = [
            lambda i=i: servers[i % 2].request(
                "POST", SEND, body=SEED_BODY, headers=headers(capped.token, f"cap-{i}")
            )
            for i in range(30)
        ]
        replies = concurrently(calls, max_workers=30)

    statuses = Counter(reply.status for reply in replies)
    assert statuses == {200: 20, 429: 10}
    for reply in replies:
        assert reply.headers["X-RateLimit-Limit"] == "20"
        if reply.status == 429:
            body = assert_problem(reply, 429, "rate_limited")
            assert body["detail"] == "Rate limit of 20 requests per minute exceeded"
            assert 1 <= int(reply.headers["Retry-After"]) <= 60
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in replies if r.status == 200)
    assert remaining == list(range(20))
    assert len(smtp.messages) == 20
    assert Send.objects.filter(status=Send.Status.SENT).count() == 20
    # Refused requests never use up their idempotency keys.
    assert IdempotencyRecord.objects.count() == 20


# -- SMTP faults ------------------------------------------------------------------------------


def _failed_send(reply) -> Send:
    body = assert_problem(reply, 500, "internal_error")
    send = Send.objects.get(public_id=body["sendId"])
    assert send.status == Send.Status.FAILED
    return send


def test_smtp_down_fails_with_send_id_and_a_retry_delivers_on_the_same_send(send_key):
    closed_port = free_port()  # nothing listens there
    with LiveServers(count=1, smtp_port=closed_port) as servers:
        reply = servers[0].request(
            "POST", SEND, body=SEED_BODY, headers=headers(send_key.token, "smtp-down")
        )
        send = _failed_send(reply)
        attempt = send.messages.get()
        assert attempt.error.startswith("ConnectionRefusedError")
        assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.FAILED

        # The SMTP server comes back on that port; the client retries with the same key.
        with FaultySmtp(port=closed_port) as smtp:
            retry = servers[0].request(
                "POST", SEND, body=SEED_BODY, headers=headers(send_key.token, "smtp-down")
            )
            assert retry.status == 200, retry.body
            assert retry.json()["sendId"] == send.public_id
            assert len(smtp.messages) == 1
    send.refresh_from_db()
    assert send.status == Send.Status.SENT
    assert send.messages.count() == 2
    assert Send.objects.count() == 1


def test_smtp_slower_than_the_timeout_fails_cleanly_and_delivers_nothing(send_key, smtp):
    smtp.mode, smtp.delay = "slow", 5.0
    with LiveServers(count=1, smtp_port=smtp.port, env={"EMAIL_TIMEOUT": "1"}) as servers:
        reply = servers[0].request(
            "POST", SEND, body=SEED_BODY, headers=headers(send_key.token, "slow")
        )
        send = _failed_send(reply)
        assert send.messages.get().error in {
            "TimeoutError",
            "SMTPServerDisconnected: Connection unexpectedly closed: timed out",
        }
        assert smtp.messages == []

        smtp.mode = "accept"
        retry = servers[0].request(
            "POST", SEND, body=SEED_BODY, headers=headers(send_key.token, "slow")
        )
    assert retry.status == 200, retry.body
    assert retry.json()["sendId"] == send.public_id
    assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    "reply_line, error",
    [
        ("550 5.1.1 No such user here", "SMTPRecipientsRefused: 550 5.1.1 No such user here"),
        (
            "451 4.7.1 Greylisted, try later",
            "SMTPRecipientsRefused: 451 4.7.1 Greylisted, try later",
        ),
    ],
)
def test_smtp_refusing_the_recipient_fails_the_send_with_the_smtp_reply(
    send_key, smtp, reply_line, error
):
    smtp.mode, smtp.reply = "reply", reply_line
    with LiveServers(count=1, smtp_port=smtp.port) as servers:
        reply = servers[0].request("POST", SEND, body=SEED_BODY, headers=headers(send_key.token))
    send = _failed_send(reply)
    attempt = send.messages.get()
    assert attempt.error == error
    assert list(send.events.values_list("type", flat=True)) == ["email.failed"]
    assert smtp.messages == []


# -- Redis unreachable ------------------------------------------------------------------------


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_unreachable_follows_ratelimit_fail_open(alice, make_key, smtp, fail_open):
    capped = make_key(alice.organization, rate_limit=5, name="capped")
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # a closed port
        "RATELIMIT_FAIL_OPEN": "true" if fail_open else "false",
    }
    with LiveServers(count=1, smtp_port=smtp.port, env=env) as servers:
        reply = servers[0].request(
            "POST", SEND, body=SEED_BODY, headers=headers(capped.token, "redis-down")
        )
    if fail_open:
        assert reply.status == 200, reply.body
        assert "X-RateLimit-Limit" not in reply.headers
        assert len(smtp.messages) == 1
        assert Send.objects.get().status == Send.Status.SENT
    else:
        body = assert_problem(reply, 503, "service_unavailable")
        assert body["detail"] == "Rate limiting is unavailable; try again shortly"
        assert smtp.messages == []
        assert not Send.objects.exists()
        assert not IdempotencyRecord.objects.exists()


# -- PostgreSQL connections dropped under load ------------------------------------------------


def _terminate_server_backends() -> int:
    """Kills every other session on the test database: what a PostgreSQL restart or a failover
    does to the servers' connections, without stopping the cluster other suites use."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_dropped_database_connections_fail_cleanly_and_recover(send_key, smtp):
    replies = []
    with LiveServers(count=2, smtp_port=smtp.port) as servers:
        stop = threading.Event()

        def client(index: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                replies.append(
                    servers[index % 2].request(
                        "POST",
                        SEND,
                        body=SEED_BODY,
                        headers=headers(send_key.token, f"pg-{index}-{n}"),
                    )
                )

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        terminated = 0
        for _ in range(8):
            time.sleep(0.25)  # let requests get under way between the faults
            terminated += _terminate_server_backends()
        stop.set()
        for thread in threads:
            thread.join()

        after = [
            servers[i % 2].request(
                "POST", SEND, body=SEED_BODY, headers=headers(send_key.token, f"after-{i}")
            )
            for i in range(4)
        ]
        health = [server.request("GET", "/healthz") for server in servers]

    assert terminated > 0
    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {200, 500, 503}, statuses
    for reply in replies:
        if reply.status != 200:
            assert reply.headers["Content-Type"] == "application/problem+json"
            assert set(reply.json()) >= {"code", "requestId"}
    assert [reply.status for reply in after] == [200, 200, 200, 200]
    assert [reply.status for reply in health] == [200, 200]

    # Every 200 has its send row (sent) and its delivered message...
    delivered = set(message_ids(smtp))
    for reply in [*replies, *after]:
        if reply.status == 200:
            body = reply.json()
            send = Send.objects.get(public_id=body["sendId"])
            assert send.status == Send.Status.SENT
            assert body["messageId"] in delivered
    # ...and every delivered message has a send row: its Feedback-ID names the send, which is
    # stored before delivery starts. (A message delivered just before its connection was killed
    # may lack its attempt row and stay `pending`: the README lists this.)
    delivered_sends = {
        header_value(envelope, "Feedback-ID").split(":")[0] for envelope in smtp.messages
    }
    assert len(delivered_sends) == len(smtp.messages)
    stored = set(Send.objects.values_list("public_id", flat=True))
    assert delivered_sends <= stored


# -- a worker killed while it holds a key -----------------------------------------------------


def test_worker_killed_holding_a_key_is_taken_over_after_the_lock_timeout(send_key, smtp):
    smtp.mode = "hold"  # delivery hangs in DATA: the key stays claimed
    # Long enough that the 409 below is certain on a loaded machine, short for the suite.
    env = {"IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "8", "EMAIL_TIMEOUT": "30"}
    body = dict(SEED_BODY, subject=f"crash {uuid.uuid4().hex[:8]}")
    with LiveServers(count=2, smtp_port=smtp.port, env=env) as servers:
        first = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: servers[0].request(
                    "POST", SEND, body=body, headers=headers(send_key.token, "crash"), timeout=60
                )
            )
        )
        first.start()
        assert smtp.arrived.wait(30), "the first request never reached the SMTP server"
        assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.IN_PROGRESS
        servers.kill(0)  # master and workers, mid-delivery
        first.join(30)
        smtp.release()  # the held session ends; nothing was accepted
        smtp.mode = "accept"
        assert smtp.messages == []

        # The other instance: the claim is still fresh, so the key is busy...
        busy = servers[1].request("POST", SEND, body=body, headers=headers(send_key.token, "crash"))
        assert_problem(busy, 409, "idempotency_in_progress")
        # ...until the lock timeout passes; a client retries as Retry-After says.
        for _ in range(60):
            retry = servers[1].request(
                "POST", SEND, body=body, headers=headers(send_key.token, "crash")
            )
            if retry.status != 409:
                break
            time.sleep(int(retry.headers["Retry-After"]))
        again = servers[1].request(
            "POST", SEND, body=body, headers=headers(send_key.token, "crash")
        )

    assert retry.status == 200, retry.body
    assert retry.json()["reused"] is False
    assert again.status == 200 and again.json() == {**retry.json(), "reused": True}
    assert len(smtp.messages) == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED
    sent = Send.objects.get(public_id=retry.json()["sendId"])
    assert sent.status == Send.Status.SENT


def _ignore_errors(call):
    try:
        return call()
    except OSError:  # the connection dies with the killed server
        return None


def test_live_server_echoes_the_request_id_and_logs_no_traceback(send_key, smtp):
    with LiveServers(count=1, smtp_port=smtp.port) as servers:
        reply = servers[0].request(
            "POST",
            SEND,
            body=json.dumps(SEED_BODY).encode(),
            headers={**headers(send_key.token), "X-Request-Id": "req-harness-check"},
        )
        logs = servers.logs()
    assert reply.status == 200
    assert reply.headers["X-Request-Id"] == "req-harness-check"
    assert "Traceback" not in logs
