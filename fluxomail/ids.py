"""Public ids: a prefix and a ULID (48-bit millisecond time + 80 random bits, Crockford base32).

Ids sort by creation time as plain strings, so `ORDER BY public_id` is time order and a cursor
can be an id. Integer primary keys never leave the service.
"""

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str, *, at_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    return f"{prefix}_{_base32(ms, 10)}{_base32(secrets.randbits(80), 16)}"
