from django.core.management.base import BaseCommand

from contacts import sync
from sends.idempotency import purge_expired


class Command(BaseCommand):
    help = (
        "Deletes idempotency records (sends and contacts sync) past their retention "
        "(IDEMPOTENCY_TTL_SECONDS, 24 h)."
    )

    def handle(self, *args, **options):
        deleted = purge_expired() + sync.purge_expired()
        self.stdout.write(f"Deleted {deleted} expired idempotency record(s).")
