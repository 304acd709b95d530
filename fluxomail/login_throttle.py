"""The login throttle shared by the owners' login page and the admin's: at most LOGIN_RATE
attempts per client address and per username (django-ratelimit, on the cache: Redis when
REDIS_URL is set, so the counts hold across workers).

With the cache unreachable, RATELIMIT_FAIL_OPEN decides, as for the send API (see
fluxomail.throttling): on, logins go through unthrottled (a warning is logged); off, every
attempt is refused with 503 before its password is checked."""

import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from fluxomail import throttling

LOGIN_RATE = "10/m"


@dataclass(frozen=True)
class Refusal:
    """Why a login attempt is refused before its password is checked, and the status to say so."""

    message: str
    status: int


THROTTLED = Refusal("Too many login attempts. Wait a minute and try again.", 429)
UNAVAILABLE = Refusal("Logging in is unavailable for a moment. Try again in a minute.", 503)


def client_ip(group: str, request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_HOPS proxies the
    X-Forwarded-For entry that the outermost trusted proxy added (entries further left are
    whatever the client sent, and could dodge the throttle)."""
    hops = settings.TRUSTED_PROXY_HOPS
    if hops:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")


def _username_key(group: str, request: HttpRequest) -> str:
    # Django logs in NFKC-normalised usernames ("ｒoot" is "root"): count them as one, or each
    # look-alike spelling would get a budget of its own.
    return unicodedata.normalize("NFKC", request.POST.get("username", "")).strip().casefold()


def _over_limit(request: HttpRequest, group: str, key) -> bool:
    usage = throttling.usage(
        request, group=group, key=key, rate=LOGIN_RATE, method="POST", increment=True
    )
    return usage is not None and usage["should_limit"]


def login_refusal(request: HttpRequest) -> Refusal | None:
    """Counts one login attempt (a POST); what to refuse it with, or None to go on. Both counters
    are incremented on every attempt so that neither one can be dodged; the groups are shared
    by every login form, so switching forms gains nothing."""
    try:
        by_ip = _over_limit(request, "login-ip", client_ip)
        by_user = _over_limit(request, "login-user", _username_key)
    except throttling.CacheUnavailable:
        return UNAVAILABLE
    return THROTTLED if by_ip or by_user else None
