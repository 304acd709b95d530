from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import ApiKey, Organization, Scope


class Command(BaseCommand):
    help = "Creates an API key for an organization and prints it once."

    def add_arguments(self, parser):
        parser.add_argument("organization", help="The organization's slug")
        parser.add_argument("--name", default="API key")
        parser.add_argument(
            "--scopes",
            default="",
            help=f"Comma-separated, of: {', '.join(Scope.values)}. Empty: send mail only.",
        )
        parser.add_argument(
            "--rate-limit", type=int, help="Requests per minute (no cap if left out)"
        )
        parser.add_argument("--expires-in-days", type=int)

    def handle(self, *args, **options):
        organization = Organization.objects.filter(slug=options["organization"]).first()
        if organization is None:
            raise CommandError(f"No organization with slug {options['organization']!r}")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(Scope.values))
        if unknown:
            raise CommandError(f"Unknown scopes: {', '.join(unknown)}")
        if options["rate_limit"] is not None and options["rate_limit"] < 1:
            raise CommandError("--rate-limit must be at least 1")
        expires_at = None
        if options["expires_in_days"]:
            try:
                expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
            except OverflowError:
                raise CommandError("--expires-in-days goes past the year 9999") from None
        try:
            key, token = ApiKey.objects.create_key(
                organization=organization,
                name=options["name"],
                scopes=scopes,
                rate_limit_per_minute=options["rate_limit"],
                expires_at=expires_at,
            )
        except ValidationError as exc:
            raise CommandError(f"--name: {' '.join(exc.messages)}") from None
        self.stdout.write(f"API key {key.name} ({key.prefix}), shown once:")
        self.stdout.write(token)
