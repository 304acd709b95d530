"""The send app's periodic chores, run by the Celery worker on beat's schedule."""

import logging

from celery import shared_task

from sends import idempotency, queue, retention

logger = logging.getLogger("fluxomail.sends")


@shared_task(name="sends.purge_idempotency")
def purge_idempotency() -> int:
    """Deletes expired idempotency records (what `manage.py purge_idempotency` does by hand)."""
    deleted = idempotency.purge_expired()
    logger.info("purged %d expired idempotency record(s)", deleted)
    return deleted


@shared_task(name="sends.purge_bodies")
def purge_bodies() -> int:
    """Blanks message bodies older than RETENTION_DAYS (sends, events and counters stay)."""
    purged = retention.purge_bodies()
    logger.info("purged the bodies of %d message(s)", purged)
    return purged


@shared_task(name="sends.deliver_queued")
def deliver_queued(job_pk: int) -> str | None:
    return queue.deliver(job_pk)


@shared_task(name="sends.sweep_queued")
def sweep_queued() -> int:
    return queue.sweep()
