"""Per-process caches of what every API request reads and almost never changes: the API key
with its organization, and the organization's policies.

Staleness is bounded by time, not by messages: an entry lives `HOT_CACHE_SECONDS` (at most 1 s,
the default), so a revoked key, a paused organization or a changed policy takes effect on every
worker of every host within a second, whatever wrote the change (an ORM save, a queryset update,
another host, psql). A change made in this process also clears this process's caches at once
(`clear_all`, called by the models' save signals and the bulk updates), so a request that
follows a change in the same worker never sees the old state. Bounded: at most `MAX_ENTRIES`
entries per cache; a full cache is emptied, not scanned.
"""

import time
from collections.abc import Callable, Hashable

from django.conf import settings

MAX_ENTRIES = 10_000
_clock = time.monotonic

_caches: list["HotCache"] = []


class HotCache:
    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, object]] = {}
        _caches.append(self)

    def get(self, key: Hashable, load: Callable[[], object]):
        """The cached value for `key`, else `load()`; None is not cached (unknown ids stay
        uncached, so that random ids cannot crowd out the real ones)."""
        now = _clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load()
        seconds = min(settings.HOT_CACHE_SECONDS, 1.0)
        if value is not None and seconds > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + seconds, value)
        return value

    def clear(self) -> None:
        self._entries.clear()


def clear_all(*args, **kwargs) -> None:
    """Empties every cache of this process (usable as a signal receiver)."""
    for cache in _caches:
        cache.clear()
