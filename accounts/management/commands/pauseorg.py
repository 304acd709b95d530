from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization


class Command(BaseCommand):
    help = (
        "Pauses an organization: every API request with its keys answers 403 tenant_paused "
        "until resumeorg. Its data and keys stay as they are."
    )
    paused = True

    def add_arguments(self, parser):
        parser.add_argument("organization", help="The organization's slug")

    def handle(self, *args, **options):
        organization = Organization.objects.filter(slug=options["organization"]).first()
        if organization is None:
            raise CommandError(f"No organization with slug {options['organization']!r}")
        if self.paused:
            organization.pause()
        else:
            organization.resume()
        state = "paused" if self.paused else "resumed"
        self.stdout.write(f"{organization.slug} {state}.")
