"""Publishing jobs: after the transaction that wrote the job's row commits, never before.

The row is the job; the message only says "look now". A publish that fails (broker down) is
logged and swallowed: the row stays due and the app's sweeper enqueues it later.
"""

import logging

from django.db import transaction

logger = logging.getLogger("fluxomail.jobs")


def publish(task, *args) -> bool:
    """Sends `task(*args)` to the broker now; False (logged) when the broker cannot be reached."""
    try:
        task.apply_async(args)
    except Exception as exc:
        logger.warning(
            "could not enqueue %s (a sweeper will pick the job up): %s",
            task.name,
            type(exc).__name__,
        )
        return False
    return True


def enqueue(task, *args) -> None:
    """Publishes `task(*args)` once the current transaction commits (at once in autocommit)."""
    transaction.on_commit(lambda: publish(task, *args))
