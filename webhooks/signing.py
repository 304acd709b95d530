"""Signatures of an outbound webhook (SPEC.md section 11).

- `Fluxomail-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the secret string
  as shown (`whsec_…`, UTF-8): what the official SDK's `webhooks.verifyAndParse` checks.
- Standard Webhooks: `webhook-id`, `webhook-timestamp` (epoch seconds) and `webhook-signature:
  v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the base64-decoded part after
  `whsec_`, as every Standard Webhooks library does. During a rotation's overlap both secrets
  sign: several `v1,` signatures separated by spaces. Fluxomail-Signature uses the newest.
"""

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def fluxomail_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt; `secrets` newest first."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Fluxomail-Webhooks/1",
        "Fluxomail-Signature": fluxomail_signature(secrets[0], body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(secret, message_id, timestamp, body) for secret in secrets
        ),
    }
