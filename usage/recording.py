"""Usage counting for the send API (SPEC.md section 5).

Every answer adds to the hourly bucket of (organization, API key, endpoint, UTC hour) with one
upsert statement (`INSERT ... ON CONFLICT DO UPDATE SET col = col + excluded.col`), run in
autocommit after the request's work: concurrent requests never lose an increment, and no row
lock is held for longer than that one statement.

USAGE_FLUSH_SECONDS = 0 writes at the end of every request; > 0 adds up in the worker and a
background thread writes the sums that often (and at exit): requests no longer wait for the
upsert, at the price of that much lag and, if a worker is killed, that much lost counting.
"""

import atexit
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from fluxomail import prometheus
from usage.models import COUNTER_FIELDS, UsageCounter, UsageRejection

logger = logging.getLogger("fluxomail.usage")


Bucket = tuple[int, int, str, datetime]  # organization id, key id, endpoint, hour


@dataclass
class Outcome:
    """One answered request of the send API."""

    organization_id: int
    api_key_id: int
    endpoint: str
    status: int
    code: str = ""
    sent: bool = False
    suppressed: bool = False
    replayed: bool = False
    latency_ms: int = 0

    def increments(self) -> dict[str, int]:
        return {
            "requests": 1,
            "sends": int(self.sent),
            "suppressed": int(self.suppressed),
            "replays": int(self.replayed),
            "rejected": int(400 <= self.status < 500 and self.status != 429),
            "rate_limited": int(self.status == 429),
            "failures": int(self.status >= 500),
            "global_endpoint_sends": int(self.sent and self.endpoint == "send-global"),
            "latency_ms_total": max(0, self.latency_ms),
        }

    def name(self, increments: dict[str, int]) -> str:
        for name in ("sends", "replays", "rejected", "rate_limited", "failures"):
            if increments[name]:
                return {"sends": "sent", "replays": "replayed", "failures": "failed"}.get(
                    name, name
                )
        return "other"


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _upsert_counters(bucket: Bucket, increments: dict[str, int]) -> None:
    table = UsageCounter._meta.db_table
    columns = ", ".join(COUNTER_FIELDS)
    updates = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in COUNTER_FIELDS)
    sql = (
        f"INSERT INTO {table} (organization_id, api_key_id, endpoint, hour, {columns}) "
        f"VALUES (%s, %s, %s, %s, {', '.join(['%s'] * len(COUNTER_FIELDS))}) "
        f"ON CONFLICT (organization_id, api_key_id, endpoint, hour) DO UPDATE SET {updates}"
    )
    organization_id, api_key_id, endpoint, hour = bucket
    params = [
        organization_id,
        api_key_id,
        endpoint,
        connection.ops.adapt_datetimefield_value(hour),
        *(increments[name] for name in COUNTER_FIELDS),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _upsert_rejection(bucket: Bucket, code: str, count: int) -> None:
    table = UsageRejection._meta.db_table
    sql = (
        f"INSERT INTO {table} (organization_id, api_key_id, endpoint, hour, code, count) "
        "VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (organization_id, api_key_id, endpoint, hour, code) "
        f"DO UPDATE SET count = {table}.count + excluded.count"
    )
    organization_id, api_key_id, endpoint, hour = bucket
    params = [
        organization_id,
        api_key_id,
        endpoint,
        connection.ops.adapt_datetimefield_value(hour),
        code,
        count,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


class _Buffer:
    """Per-process sums between flushes (USAGE_FLUSH_SECONDS > 0)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counters: dict[Bucket, Counter] = defaultdict(Counter)
        self.rejections: dict[tuple[Bucket, str], int] = defaultdict(int)
        self.last_flush = time.monotonic()

    def add(self, bucket: Bucket, increments: dict, code: str) -> None:
        with self.lock:
            self.counters[bucket].update(increments)
            if code:
                self.rejections[(bucket, code)] += 1

    def take(self) -> tuple[dict, dict]:
        with self.lock:
            counters, rejections = self.counters, self.rejections
            self.counters, self.rejections = defaultdict(Counter), defaultdict(int)
            self.last_flush = time.monotonic()
        return counters, rejections

    def due(self, every: float) -> bool:
        return time.monotonic() - self.last_flush >= every


_buffer = _Buffer()


def _write(counters: dict, rejections: dict) -> None:
    for bucket, increments in counters.items():
        _upsert_counters(bucket, {name: increments.get(name, 0) for name in COUNTER_FIELDS})
    for (bucket, code), count in rejections.items():
        _upsert_rejection(bucket, code, count)


def flush() -> bool:
    """Writes what the buffer holds; False when nothing was buffered (no database access)."""
    counters, rejections = _buffer.take()
    if not (counters or rejections):
        return False
    try:
        _write(counters, rejections)
    except Exception as exc:
        # Counting must never turn a delivered mail into an error answer.
        logger.error("usage flush failed: %s", type(exc).__name__)
    return True


atexit.register(flush)

_flusher_lock = threading.Lock()
_flusher_pid: int | None = None


def _flush_forever() -> None:
    while True:
        every = settings.USAGE_FLUSH_SECONDS
        time.sleep(min(every, 1.0) if every > 0 else 1.0)
        if every > 0 and not _buffer.due(every):
            continue
        wrote = every > 0 and flush()
        # This thread has its own database connection. Keep it while there is work (stale or
        # broken ones are replaced); an idle worker lets it go instead of holding a server slot.
        try:
            if wrote:
                connection.close_if_unusable_or_obsolete()
            else:
                connection.close()
        except Exception as exc:
            logger.warning("usage flush connection check failed: %s", type(exc).__name__)


def _ensure_flusher() -> None:
    """One daemon thread per worker process writes the sums every USAGE_FLUSH_SECONDS, so that
    requests never wait for the upsert and a quiet worker's last counts are not left behind.
    Started lazily, and again in a forked child (threads do not survive a fork)."""
    global _flusher_pid
    pid = os.getpid()
    if _flusher_pid == pid:
        return
    with _flusher_lock:
        if _flusher_pid != pid:
            threading.Thread(target=_flush_forever, name="usage-flush", daemon=True).start()
            _flusher_pid = pid


def record(outcome: Outcome, *, now: datetime | None = None) -> None:
    """Counts one answer. Rejections (4xx but 429) are also counted by code."""
    bucket: Bucket = (
        outcome.organization_id,
        outcome.api_key_id,
        outcome.endpoint,
        hour_of(now or timezone.now()),
    )
    increments = outcome.increments()
    prometheus.count_send(outcome.endpoint, outcome.name(increments))
    code = outcome.code if increments["rejected"] else ""
    every = settings.USAGE_FLUSH_SECONDS
    if every > 0:
        _buffer.add(bucket, increments, code)
        _ensure_flusher()
        return
    try:
        _upsert_counters(bucket, increments)
        if code:
            _upsert_rejection(bucket, code, 1)
    except Exception as exc:
        logger.error("usage counting failed: %s", type(exc).__name__)
