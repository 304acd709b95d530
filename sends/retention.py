"""Retention: message bodies (text, HTML, headers) are blanked RETENTION_DAYS after sending.

Sends (with the name, type and size of each attachment; never content), messages (their
metadata), events and counters stay; `body_purged_at` says when the body went, and the timeline
and the dashboard show it. Beat runs `purge_bodies` every JOBS_PURGE_SECONDS; each run works in
short batches, so no transaction holds many rows.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from sends.models import Message

BATCH = 1000


def purge_bodies(now=None) -> int:
    """Blanks the bodies of messages older than RETENTION_DAYS; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.RETENTION_DAYS)
    purged = 0
    while True:
        # The partial index message_unpurged serves this: oldest unpurged messages first.
        pks = list(
            Message.objects.filter(body_purged_at__isnull=True, created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("pk", flat=True)[:BATCH]
        )
        if not pks:
            return purged
        purged += Message.objects.filter(pk__in=pks, body_purged_at__isnull=True).update(
            text="", html="", headers={}, body_purged_at=now
        )
