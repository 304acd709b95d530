"""Publishing jobs: after the transaction that wrote the job's row commits, never before.

The row is the job; the message only says "look now". A publish that fails (broker down) is
logged and swallowed: the row stays due and the app's sweeper enqueues it later. After a failed
publish this process skips publishing for BROKER_DOWN_SECONDS, so that an unreachable broker
costs one connection timeout per process and period, not one per request.
"""

import logging
import time

from django.db import transaction
from django.db.models import Q

logger = logging.getLogger("fluxomail.jobs")

BROKER_DOWN_SECONDS = 10.0
_skip_until = 0.0


def publish(task, *args) -> bool:
    """Sends `task(*args)` to the broker now; False (logged) when the broker cannot be reached."""
    global _skip_until
    if time.monotonic() < _skip_until:
        return False
    try:
        task.apply_async(args, **_reprs(args))
    except Exception as exc:
        _skip_until = time.monotonic() + BROKER_DOWN_SECONDS
        logger.warning(
            "could not enqueue %s (a sweeper will pick the job up): %s",
            task.name,
            type(exc).__name__,
        )
        return False
    return True


def _reprs(args: tuple) -> dict:
    """The message's `argsrepr` and `kwargsrepr` headers for a job's ids, as Celery writes them
    (its saferepr of a tuple of ints is the tuple's repr), so that Celery skips its saferepr:
    about 50 µs of a publish's 0.5 ms of CPU. Other arguments are left to Celery."""
    if all(type(arg) is int for arg in args):
        return {"argsrepr": repr(args), "kwargsrepr": "{}"}
    return {}


def enqueue(task, *args) -> None:
    """Publishes `task(*args)` once the current transaction commits (at once in autocommit)."""
    transaction.on_commit(lambda: publish(task, *args))


def due(now) -> Q:
    """Job rows whose time has come and that no worker holds (or whose claim ran out): the
    rows have `next_attempt_at` and `locked_until`."""
    return Q(next_attempt_at__lte=now) & (Q(locked_until__isnull=True) | Q(locked_until__lt=now))


def publish_due(queryset, task, limit: int = 500) -> int:
    """The sweepers: publishes `task(pk)` for the `limit` most overdue rows of `queryset`."""
    pks = list(queryset.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in pks:
        publish(task, pk)
    return len(pks)
