from django.core.management.base import BaseCommand

from sends.idempotency import purge_expired


class Command(BaseCommand):
    help = "Deletes idempotency records past their retention (IDEMPOTENCY_TTL_SECONDS, 24 h)."

    def handle(self, *args, **options):
        deleted = purge_expired()
        self.stdout.write(f"Deleted {deleted} expired idempotency record(s).")
