"""Unsubscribe and preferences tokens: signed, bound to an organization, an address and a scope.

A token is Django's signing (HMAC-SHA256 with SECRET_KEY, salt `fluxomail.unsubscribe`) over
the organization's slug, the normalised address and the scope (a category's key, or empty for
all mail), and nothing else. It does not expire: a recipient may unsubscribe from a mail of
any age, and a forged, altered or re-scoped token never verifies (rotating SECRET_KEY
invalidates old links unless the old key stays in SECRET_KEY_FALLBACKS).
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing

from accounts.models import Organization
from contacts.models import ALL_MAIL, Category
from fluxomail.addresses import normalize

SALT = "fluxomail.unsubscribe"
MAX_LENGTH = 1000


class BadToken(Exception):
    """Forged, altered, truncated, for another purpose, or naming what no longer exists."""


@dataclass(frozen=True)
class Target:
    organization: Organization
    address: str
    category: str  # ALL_MAIL or a category's key


def make(organization: Organization, address: str, category: str = ALL_MAIL) -> str:
    payload = {"o": organization.slug, "a": normalize(address), "c": category}
    return signing.dumps(payload, salt=SALT, compress=True)


def read(token) -> Target:
    """The target of a token; BadToken for anything that is not a valid one of ours."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_LENGTH:
        raise BadToken
    try:
        payload = signing.loads(token, salt=SALT)
    except (signing.BadSignature, ValueError):
        raise BadToken from None
    if not (
        isinstance(payload, dict)
        and set(payload) == {"o", "a", "c"}
        and all(isinstance(value, str) for value in payload.values())
    ):
        raise BadToken
    organization = Organization.objects.filter(slug=payload["o"]).first()
    if organization is None:
        raise BadToken
    category = payload["c"]
    if category and not Category.objects.for_org(organization).filter(key=category).exists():
        raise BadToken
    return Target(organization, payload["a"], category)


def unsubscribe_url(token: str) -> str:
    return f"{settings.SITE_URL}/api/unsubscribe?{urlencode({'token': token}, safe=':')}"


def preferences_url(token: str) -> str:
    return f"{settings.SITE_URL}/preferences?{urlencode({'token': token}, safe=':')}"
