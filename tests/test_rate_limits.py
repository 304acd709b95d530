"""Per-key rate limits: headers, 429, replays free, window reset, cache failure, Redis workers."""

import itertools
import threading
import time
import zlib
from datetime import timedelta

import pytest
import requests
import time_machine
from django.conf import settings as django_settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core import mail
from django.test.testcases import LiveServerThread

from sends.models import IdempotencyRecord, Send
from usage.models import UsageCounter, UsageRejection

SEND = "/api/v1/emails/send"


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


def window_start(public_id: str) -> float:
    """A moment 10 minutes ahead at which this key's 60-second window has just begun.

    django-ratelimit shifts each key's window by crc32(key) % 60 seconds; starting there keeps
    a test's requests inside one window without sleeping.
    """
    now = int(time.time())
    jitter = zlib.crc32(public_id.encode()) % 60
    return now - now % 60 + 600 + jitter + 1


@pytest.fixture
def capped(make_key, alice):
    return make_key(alice.organization, rate_limit=3, name="capped")


@pytest.mark.django_db
class TestHeadersAnd429:
    def test_headers_count_down_and_the_request_over_the_cap_is_429(self, api, capped, seed_body):
        with time_machine.travel(window_start(capped.key.public_id), tick=False):
            reset_at = str(int(time.time()) + 59)
            answers = [send(api, capped, seed_body) for _ in range(4)]

        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        for remaining, response in zip([2, 1, 0], answers, strict=False):
            assert response["X-RateLimit-Limit"] == "3"
            assert response["X-RateLimit-Remaining"] == str(remaining)
            assert response["X-RateLimit-Reset"] == reset_at
            assert response["RateLimit-Policy"] == '"per-minute";q=3;w=60'
            assert response["RateLimit"] == f'"per-minute";r={remaining};t=59'
        limited = answers[3]
        assert limited["Retry-After"] == "59"
        assert limited["X-RateLimit-Remaining"] == "0"
        assert limited["X-RateLimit-Reset"] == reset_at
        assert limited.json() == {
            "type": "/docs/errors/rate_limited",
            "title": "Rate limited",
            "status": 429,
            "detail": "Rate limit of 3 requests per minute exceeded",
            "code": "rate_limited",
            "error": "Rate limit of 3 requests per minute exceeded",
            "message": "Rate limit of 3 requests per minute exceeded",
            "details": {},
            "requestId": limited["X-Request-Id"],
        }
        assert Send.objects.count() == 3
        assert len(mail.outbox) == 3

    def test_no_cap_means_no_rate_limit_headers(self, api, send_key, seed_body):
        response = send(api, send_key, seed_body)

        assert response.status_code == 200
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "RateLimit", "Retry-After"):
            assert name not in response

    def test_the_window_resets_after_a_minute(self, api, capped, seed_body):
        with time_machine.travel(window_start(capped.key.public_id), tick=False) as traveller:
            for _ in range(3):
                send(api, capped, seed_body)
            assert send(api, capped, seed_body).status_code == 429
            traveller.shift(timedelta(seconds=60))

            response = send(api, capped, seed_body)

        assert response.status_code == 200
        assert response["X-RateLimit-Remaining"] == "2"

    def test_replays_do_not_use_up_the_budget(self, api, capped, seed_body):
        with time_machine.travel(window_start(capped.key.public_id), tick=False):
            send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")
            replays = [send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k") for _ in range(5)]
            fresh = [send(api, capped, seed_body) for _ in range(3)]

        assert [r.status_code for r in replays] == [200] * 5
        assert replays[-1]["X-RateLimit-Remaining"] == "2"
        assert [r.status_code for r in fresh] == [200, 200, 429]

    def test_429_is_counted_as_rate_limited_not_rejected(self, api, capped, seed_body):
        with time_machine.travel(window_start(capped.key.public_id), tick=False):
            for _ in range(5):
                send(api, capped, seed_body)

        counter = UsageCounter.objects.get()
        assert (counter.requests, counter.sends, counter.rate_limited, counter.rejected) == (
            5,
            3,
            2,
            0,
        )
        assert not UsageRejection.objects.exists()

    def test_rate_limit_comes_before_validation(self, api, capped, seed_body):
        with time_machine.travel(window_start(capped.key.public_id), tick=False):
            for _ in range(3):
                send(api, capped, {})
            response = send(api, capped, {})

        assert response.status_code == 429


class _TickingClock:
    """django-ratelimit's clock at the end of a window: each count reads the window's last
    second, then (for time_left) the next one, as when the second turns between the two."""

    def __init__(self, last_second: int):
        self.reads = itertools.cycle([last_second + 0.999, last_second + 1.0])

    def time(self) -> float:
        return next(self.reads)


@pytest.mark.django_db
@pytest.mark.parametrize("fail_open", [True, False])
def test_a_count_as_the_window_turns_is_a_count_not_a_cache_failure(
    api, capped, seed_body, settings, monkeypatch, caplog, fail_open
):
    """get_usage() answers time_left -1 then, as it does for a cache that failed (failing
    closed): that answer has a limit, a failed one none. It was taken for an outage: no
    rate-limit headers and a warning, or a 503 with RATELIMIT_FAIL_OPEN off."""
    from django_ratelimit import core

    settings.RATELIMIT_FAIL_OPEN = fail_open
    start = window_start(capped.key.public_id)
    with time_machine.travel(start, tick=False):
        send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")
    last_second = int(start) - 1 + 60  # the window that began at start - 1 ends here
    with time_machine.travel(last_second + 1.2, tick=False):  # the rest of the request: after
        monkeypatch.setattr(core, "time", _TickingClock(last_second))
        fresh = send(api, capped, seed_body)
        replay = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")

    for response in (fresh, replay):
        assert response.status_code == 200
        assert response["X-RateLimit-Remaining"] == "1"
        assert response["X-RateLimit-Reset"] == str(last_second)
        assert response["RateLimit"] == '"per-minute";r=1;t=1'
    assert warnings(caplog) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("unreachable_cache")
class TestCacheDown:
    def test_fails_open_by_default_and_logs_a_warning(self, api, capped, seed_body, caplog):
        response = send(api, capped, seed_body)

        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response
        assert warnings(caplog) == ["rate limit not enforced: cache unavailable (ConnectionError)"]
        assert capped.token not in caplog.text
        assert capped.key.public_id not in caplog.text

    def test_fails_closed_with_503_when_configured(self, api, capped, seed_body, settings, caplog):
        settings.RATELIMIT_FAIL_OPEN = False

        response = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")

        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert "X-RateLimit-Limit" not in response
        assert Send.objects.count() == 0
        assert not IdempotencyRecord.objects.exists()
        assert warnings(caplog) == ["rate limit cache unavailable (ConnectionError)"]
        assert capped.token not in caplog.text
        assert capped.key.public_id not in caplog.text


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fluxomail.ratelimit"]


class _Worker:
    """A threaded WSGI server of this process on its own port: one more 'worker'."""

    def __init__(self):
        self.thread = LiveServerThread("127.0.0.1", StaticFilesHandler)
        self.thread.daemon = True
        self.thread.start()
        self.thread.is_ready.wait()
        if self.thread.error:
            raise self.thread.error
        self.url = f"http://127.0.0.1:{self.thread.port}"

    def stop(self) -> None:
        self.thread.terminate()


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cap_holds_across_two_workers_sharing_redis(make_key, alice, seed_body):
    assert django_settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    key = make_key(alice.organization, rate_limit=10, name="shared cap")
    workers = [_Worker(), _Worker()]
    barrier = threading.Barrier(30)
    responses: list = [None] * 30

    def client(index: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            responses[index] = session.post(
                workers[index % 2].url + SEND,
                json=seed_body,
                headers={"Authorization": f"Bearer {key.token}"},
                timeout=30,
            )

    try:
        with time_machine.travel(window_start(key.key.public_id), tick=True):
            threads = [threading.Thread(target=client, args=(i,)) for i in range(30)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        for worker in workers:
            worker.stop()

    accepted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(accepted), len(limited)) == (10, 20)
    assert Send.objects.filter(status="sent").count() == 10
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in accepted) == list(range(10))
    resets = {r.headers["X-RateLimit-Reset"] for r in responses}
    assert len(resets) == 1  # one window, whichever worker answered
    for response in limited:
        assert response.json()["code"] == "rate_limited"
        assert response.headers["X-RateLimit-Limit"] == "10"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["RateLimit-Policy"] == '"per-minute";q=10;w=60'


@pytest.fixture
def redis_commands(monkeypatch):
    """Every command this process sends to Redis, by name, as it goes out."""
    from redis.connection import AbstractConnection

    sent: list[str] = []
    original = AbstractConnection.send_command

    def send_command(self, *args, **kwargs):
        sent.append(str(args[0]).upper())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_command", send_command)
    return sent


@pytest.mark.redis
@pytest.mark.django_db
def test_each_count_and_each_look_is_one_redis_round_trip(api, capped, seed_body, redis_commands):
    from django.core.cache import caches

    assert django_settings.RATELIMIT_USE_CACHE == "ratelimit"
    with time_machine.travel(window_start(capped.key.public_id), tick=False):
        send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")  # loads the script once
        rounds = []
        for idempotency_key in ("k", "k", "a", "b", "c"):  # 2 replays, 2 sends, 1 over the cap
            redis_commands.clear()
            response = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY=idempotency_key)
            rounds.append(
                (response.status_code, response["X-RateLimit-Remaining"], redis_commands[:])
            )

    assert rounds == [
        (200, "2", ["GET"]),
        (200, "2", ["GET"]),
        (200, "1", ["EVALSHA"]),
        (200, "0", ["EVALSHA"]),
        (429, "0", ["EVALSHA"]),
    ]
    client = caches["ratelimit"]._cache.get_client()
    [counter] = client.keys("*rl:*")
    assert int(client.get(counter)) == 4
    # The window's counter goes away on its own: django-ratelimit's 60 s and 5 s to spare.
    assert 0 < client.ttl(counter) <= 65


@pytest.mark.redis
@pytest.mark.django_db
def test_the_counters_connection_is_kept_and_replaced_when_redis_dropped_it(
    api, capped, seed_body, redis_commands, caplog
):
    """The counters' GET and script go over one connection per thread, kept across requests;
    one that Redis closed (a restart, CLIENT KILL) is noticed before the next command and
    replaced, with nothing refused or left uncounted."""
    from django.core.cache import caches

    counters = caches["ratelimit"]._cache
    with time_machine.travel(window_start(capped.key.public_id), tick=False):
        send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")
        kept = counters._local.connection
        send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="k")  # a replay: GET
        send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="a")  # a count: EVALSHA
        assert counters._local.connection is kept
        kept_socket = kept._sock
        # Only this connection: the Redis server may be shared with other work.
        assert counters.get_client().client_kill_filter(_id=counters.command("CLIENT", "ID")) == 1
        redis_commands.clear()
        replay = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="a")
        counted = send(api, capped, seed_body, HTTP_IDEMPOTENCY_KEY="b")

    assert (replay.status_code, replay["X-RateLimit-Remaining"]) == (200, "1")
    assert (counted.status_code, counted["X-RateLimit-Remaining"]) == (200, "0")
    assert counters._local.connection is kept and kept._sock is not kept_socket  # reconnected
    assert [c for c in redis_commands if c in ("GET", "EVALSHA")] == ["GET", "EVALSHA"]
    assert warnings(caplog) == []


@pytest.mark.redis
@pytest.mark.django_db
def test_a_forked_process_counts_on_a_connection_of_its_own(api, capped, seed_body, monkeypatch):
    from django.core.cache import caches

    from fluxomail import throttling

    counters = caches["ratelimit"]._cache
    with time_machine.travel(window_start(capped.key.public_id), tick=False):
        send(api, capped, seed_body)
        parents = counters._local.connection
        monkeypatch.setattr(throttling.os, "getpid", lambda: -1)  # as in a forked child
        response = send(api, capped, seed_body)

    assert (response.status_code, response["X-RateLimit-Remaining"]) == (200, "1")
    assert counters._local.connection is not parents
    assert counters._local.pid == -1


@pytest.mark.redis
@pytest.mark.django_db
def test_a_script_redis_forgot_is_sent_whole_once(
    api, capped, seed_body, redis_commands, monkeypatch
):
    import hashlib
    import uuid

    from fluxomail import throttling

    # A script this Redis has never seen, as after a restart or a SCRIPT FLUSH (a flush of the
    # shared server would race with any other process that loads the project's script again).
    script = f"{throttling._COUNT}-- {uuid.uuid4().hex}\n"
    with time_machine.travel(window_start(capped.key.public_id), tick=False):
        send(api, capped, seed_body)
        monkeypatch.setattr(throttling, "_COUNT", script)
        monkeypatch.setattr(throttling, "_COUNT_SHA", hashlib.sha1(script.encode()).hexdigest())
        redis_commands.clear()
        first = send(api, capped, seed_body)
        second = send(api, capped, seed_body)

    assert [first["X-RateLimit-Remaining"], second["X-RateLimit-Remaining"]] == ["1", "0"]
    assert redis_commands == ["EVALSHA", "EVAL", "EVALSHA"]
