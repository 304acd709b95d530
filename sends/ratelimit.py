"""Per-key request caps on the send API: django-ratelimit's fixed 60-second window on the cache.

The counter lives in the default cache (Redis when REDIS_URL is set) under a group per key's
public id, so every worker and host counts together. With the cache unreachable,
RATELIMIT_FAIL_OPEN decides (fluxomail.throttling): no cap, or 503.
"""

import time
from dataclasses import dataclass

from accounts.models import ApiKey
from fluxomail import throttling
from fluxomail.api import RateLimited, ServiceUnavailable

WINDOW_SECONDS = 60


@dataclass
class RateState:
    limit: int
    remaining: int
    reset_at: int  # UTC epoch second at which the window resets
    reset_in: int  # seconds until then, at least 1

    def headers(self) -> dict:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "RateLimit-Policy": f'"per-minute";q={self.limit};w={WINDOW_SECONDS}',
            "RateLimit": f'"per-minute";r={self.remaining};t={self.reset_in}',
        }


def _usage(request, key: ApiKey, *, increment: bool) -> dict | None:
    """django-ratelimit's usage; None when the cache failed and we fail open."""
    try:
        return throttling.usage(
            request,
            group=f"send:{key.public_id}",
            key=lambda group, request: key.public_id,
            rate=f"{key.rate_limit_per_minute}/m",
            increment=increment,
        )
    except throttling.CacheUnavailable:
        raise ServiceUnavailable("Rate limiting is unavailable; try again shortly") from None


def _state(key: ApiKey, usage: dict) -> RateState:
    limit = key.rate_limit_per_minute
    # django-ratelimit's time_left is window end minus int(now): the window end itself is the
    # same for every request of the window, on every worker.
    return RateState(
        limit=limit,
        remaining=max(0, limit - usage["count"]),
        reset_at=int(time.time()) + int(usage["time_left"]),
        reset_in=max(1, int(usage["time_left"])),
    )


def hit(request, key: ApiKey) -> RateState | None:
    """Counts this request against the key's cap; raises 429 over the cap. None: no cap."""
    if not key.rate_limit_per_minute:
        return None
    usage = _usage(request, key, increment=True)
    if usage is None:
        return None
    state = _state(key, usage)
    if usage["should_limit"]:
        raise RateLimited(
            f"Rate limit of {state.limit} requests per minute exceeded",
            headers={"Retry-After": str(state.reset_in), **state.headers()},
        )
    return state


def peek(request, key: ApiKey) -> RateState | None:
    """The key's current window without counting (replays, 409/422, 403 answers)."""
    if not key.rate_limit_per_minute:
        return None
    try:
        usage = _usage(request, key, increment=False)
    except ServiceUnavailable:
        return None
    return None if usage is None else _state(key, usage)
