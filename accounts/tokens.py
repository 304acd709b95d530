"""Short-lived tokens (SPEC.md section 8): what a browser holds instead of an API key.

A token is `flxt_` + a value signed with SECRET_KEY (django.core.signing, a salt of its own):
the minting key's public id, the token's scopes and its expiry, nothing secret. Nothing is
stored: every use looks the key up again, so revoking or expiring the key ends its tokens at
once, and a token never does more than its key can do now.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core import signing
from django.utils import timezone

from accounts.models import ApiKey

TOKEN_PREFIX = "flxt_"
MAX_TTL_SECONDS = 3600
DEFAULT_TTL_SECONDS = 300
# Tokens are for reading: any other method is refused (401) even within the token's scopes.
TOKEN_METHODS = ("GET", "HEAD")
_MAX_LENGTH = 1000  # a token is about 100 characters; refuse longer input before any work
_signer = signing.Signer(salt="fluxomail.accounts.tokens", sep=".", algorithm="sha256")


@dataclass(frozen=True)
class TokenGrant:
    """request.auth for a short-lived token: its key (for the organization) and its scopes."""

    key: ApiKey
    scopes: tuple[str, ...]
    expires_at: datetime

    @property
    def organization(self):
        return self.key.organization

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes and self.key.has_scope(scope)


def issue(key: ApiKey, *, scopes: list[str], ttl_seconds: int) -> tuple[str, datetime]:
    """A token for `key` with `scopes` (the caller checks they are the key's) and its expiry."""
    expires_at = timezone.now() + timedelta(seconds=ttl_seconds)
    payload = {"k": key.public_id, "s": list(scopes), "x": int(expires_at.timestamp() * 1000)}
    return TOKEN_PREFIX + _signer.sign_object(payload), expires_at


def grant_for(token: str) -> TokenGrant | None:
    """The grant of a valid, unexpired token whose key is still active; None otherwise."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_LENGTH:
        return None
    try:
        payload = _signer.unsign_object(token[len(TOKEN_PREFIX) :])
        public_id, scopes, expires_ms = payload["k"], payload["s"], payload["x"]
    except (signing.BadSignature, ValueError, KeyError, TypeError):
        return None
    expires_at = datetime.fromtimestamp(expires_ms / 1000, UTC)
    if expires_at <= timezone.now():
        return None
    key = ApiKey.objects.select_related("organization").filter(public_id=public_id).first()
    if key is None or not key.is_active:
        return None
    return TokenGrant(key=key, scopes=tuple(scopes), expires_at=expires_at)
