from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey


class Command(BaseCommand):
    help = (
        "Revokes an API key by its prefix (flx_ and 8 characters, as listkeys shows it): "
        "every request with it is refused (401 invalid_key) from then on. Cannot be undone."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The key's prefix, e.g. flx_ab12cd34")

    def handle(self, *args, **options):
        public_id = options["prefix"].removeprefix("flx_").rstrip("_")
        key = ApiKey.objects.select_related("organization").filter(public_id=public_id).first()
        if key is None:
            raise CommandError(f"No API key with prefix {options['prefix']!r}")
        if key.revoked_at is not None:
            self.stdout.write(f"{key.prefix} ({key.name}) was already revoked.")
            return
        key.revoke()
        self.stdout.write(f"Revoked {key.prefix} ({key.name}) of {key.organization.slug}.")
