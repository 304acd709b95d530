"""django-ratelimit's fixed-window counters with one rule for a cache outage, shared by the
send API's per-key caps (sends.ratelimit) and the login throttle (fluxomail.login_throttle).

When the cache (Redis) cannot count, RATELIMIT_FAIL_OPEN decides: on (the default) the request
goes through uncounted, off the caller refuses it. Either way a warning naming only the
exception's type is logged: no key, address or username reaches a log line.
"""

import logging

from django.conf import settings
from django_ratelimit.core import get_usage

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
    # failing closed, with time_left -1; our callers always ask with a rate and their method.
    if found is not None and found["time_left"] != -1:
        return found
    if settings.RATELIMIT_FAIL_OPEN:
        logger.warning("rate limit not enforced: cache unavailable (%s)", cause)
        return None
    logger.warning("rate limit cache unavailable (%s)", cause)
    raise CacheUnavailable()
