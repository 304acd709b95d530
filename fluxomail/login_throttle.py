"""The login throttle shared by the owners' login page and the admin's: at most LOGIN_RATE
attempts per client address and per username (django-ratelimit, on the cache: Redis when
REDIS_URL is set, so the counts hold across workers)."""

import unicodedata

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited

LOGIN_RATE = "10/m"
THROTTLED_MESSAGE = "Too many login attempts. Wait a minute and try again."


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


def login_throttled(request: HttpRequest) -> bool:
    """Counts one login attempt (a POST) and tells whether it is over the limit. Both counters
    are incremented on every attempt so that neither one can be dodged; the groups are shared
    by every login form, so switching forms gains nothing."""
    by_ip = is_ratelimited(
        request, group="login-ip", key=client_ip, rate=LOGIN_RATE, method="POST", increment=True
    )
    by_user = is_ratelimited(
        request,
        group="login-user",
        key=_username_key,
        rate=LOGIN_RATE,
        method="POST",
        increment=True,
    )
    return by_ip or by_user
