"""Public ids: a prefix and a ULID (48-bit millisecond time + 80 random bits, Crockford base32).

Ids sort by creation time as plain strings, so `ORDER BY public_id` is time order and a cursor
can be an id. Within one process, ids made in the same millisecond are monotonic (the random
part of the previous id plus one), so a burst keeps its order too. Integer primary keys never
leave the service.
"""

import secrets
import threading
import time
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (-1, 0)  # (millisecond, random part) of the newest id made by this process


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str, *, at_ms: int | None = None) -> str:
    global _last
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    with _lock:
        last_ms, last_random = _last
        if ms == last_ms and last_random + 1 < 2**_RANDOM_BITS:
            random_part = last_random + 1
        else:
            random_part = secrets.randbits(_RANDOM_BITS)
        _last = (ms, random_part)
    return f"{prefix}_{_base32(ms, 10)}{_base32(random_part, 16)}"


def first_id_at(prefix: str, moment: datetime) -> str:
    """The smallest id that can be made at `moment`'s millisecond or later: `public_id >= it`
    is "made at or after moment", answered from an index on the id."""
    ms = int(moment.timestamp() * 1000)
    return f"{prefix}_{_base32(ms, 10)}{_base32(0, 16)}"
