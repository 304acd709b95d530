"""django-ratelimit's fixed-window counters with one rule for a cache outage, shared by the
send API's per-key caps (sends.ratelimit) and the login throttle (fluxomail.login_throttle).

When the cache (Redis) cannot count, RATELIMIT_FAIL_OPEN decides: on (the default) the request
goes through uncounted, off the caller refuses it. Either way a warning naming only the
exception's type is logged: no key, address or username reaches a log line.

With Redis, the counters live in a cache of their own (RATELIMIT_USE_CACHE = "ratelimit") whose
backend, RedisCounterCache, counts in one round trip.
"""

import hashlib
import logging
import os
import threading

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django_ratelimit.core import get_usage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("fluxomail.ratelimit")


class CacheUnavailable(Exception):
    """The cache could not count and RATELIMIT_FAIL_OPEN is off: refuse the request."""


def usage(request, **options) -> dict | None:
    """get_usage(request, **options); None when the cache could not count and RATELIMIT_FAIL_OPEN
    lets the request through. Raises CacheUnavailable when it is off."""
    try:
        found = get_usage(request, **options)
        cause = "no count"
    except Exception as exc:  # the cache client's own errors (redis.ConnectionError, timeouts)
        found, cause = None, type(exc).__name__
    # get_usage itself answers a failed count with None (it reads RATELIMIT_FAIL_OPEN too) or,
    # failing closed, with limit 0 and time_left -1; our callers always ask with a rate (never
    # 0) and their method. A count has time_left -1 too when the clock turns the window's last
    # second between get_usage's two readings of it: that one has its limit.
    if found is not None and not (found["limit"] == 0 and found["time_left"] == -1):
        return found
    if settings.RATELIMIT_FAIL_OPEN:
        logger.warning("rate limit not enforced: cache unavailable (%s)", cause)
        return None
    logger.warning("rate limit cache unavailable (%s)", cause)
    raise CacheUnavailable()


# INCRBY, and an expiry for a counter that has none (the INCRBY created it), in one round trip.
_COUNT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('TTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return count
"""
_COUNT_SHA = hashlib.sha1(_COUNT.encode()).hexdigest()
_MAX_PENDING = 1000


class _Client(RedisCacheClient):
    """One redis.Redis per connection pool, kept: Django builds one per command, and building
    one copies its table of about 170 response callbacks, which costs more CPU than the
    command's round trip. A client is safe to share (each command checks a connection out)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._local = threading.local()

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def command(self, *args):
        """One command on this thread's own connection, its reply parsed: what
        `redis.Redis.execute_command` does for the counters' GET and script, without its
        per-command work (checking a connection out of the pool and back, its retry wrapper,
        observability hooks and response callbacks), about 50 µs of CPU per command here.

        The connection is made once per thread and process (after a fork the child makes its
        own) with the pool's settings, and kept. As the pool does at each checkout, it is looked at
        before each command: data waiting or a closed socket (Redis restarted) means it is
        reconnected. A command that fails on the way (a timeout, a reset) closes it, and the
        next command connects afresh; the error goes to the caller (RATELIMIT_FAIL_OPEN)."""
        local = self._local
        pid = os.getpid()
        connection = getattr(local, "connection", None)
        if connection is None or local.pid != pid:
            # The pool's kind of connection, owned by this thread alone (not checked out of the
            # pool, which would hold it after the thread ends): closed when the thread ends.
            pool = self._get_connection_pool(True)
            connection = pool.connection_class(**pool.connection_kwargs)
            local.connection, local.pid = connection, pid
        elif not _ready(connection):
            connection.disconnect()  # send_command() connects again
        try:
            connection.send_command(*args)
            return connection.read_response()
        except ResponseError:
            raise  # Redis answered (e.g. NOSCRIPT): the connection is in step
        except BaseException:
            connection.disconnect()
            raise

    def count(self, key: str, delta: int, expiry: int) -> int:
        """_COUNT on `key`: EVALSHA, and EVAL (which caches the script) when Redis does not
        know it yet, as redis-py's Script does with SCRIPT LOAD."""
        try:
            return self.command("EVALSHA", _COUNT_SHA, 1, key, delta, expiry)
        except NoScriptError:
            return self.command("EVAL", _COUNT, 1, key, delta, expiry)


def _ready(connection) -> bool:
    """Whether a kept connection can take a command: nothing unread on it, still open."""
    try:
        return not connection.can_read()
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return False


class RedisCounterCache(RedisCache):
    """Django's Redis cache for django-ratelimit's counters only: one round trip per count.

    get_usage() calls add(key, 0 or 1, window) and then incr(key) to count, or get(key) to
    look: on Django's RedisCache that is SET NX, EXISTS and INCRBY, three round trips. Here
    add() writes nothing: it notes the window's expiry and answers "already there", so that
    get_usage() goes on with incr(), one script (INCRBY, and EXPIRE when the key has no
    expiry), or get(), one GET. The counts, keys and windows are django-ratelimit's own.
    Not a general-purpose cache: add() never stores.
    """

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _Client
        self._expiry: dict[str, int] = {}  # key -> seconds, from add() until incr() or get()

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        if len(self._expiry) >= _MAX_PENDING:
            self._expiry.clear()  # get_usage() always follows add() with incr() or get()
        self._expiry[key] = self.get_backend_timeout(timeout) or 0
        return False

    def incr(self, key, delta=1, version=None) -> int:
        expiry = self._expiry.pop(key, None)
        if expiry is None:
            expiry = self.get_backend_timeout() or 0
        made = self.make_and_validate_key(key, version=version)
        return self._cache.count(made, delta, expiry)

    def get(self, key, default=None, version=None):
        self._expiry.pop(key, None)
        # RedisCache.get(), the GET sent on the counters' own connection (_Client.command).
        value = self._cache.command("GET", self.make_and_validate_key(key, version=version))
        return default if value is None else self._cache._serializer.loads(value)
