from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey, Organization


class Command(BaseCommand):
    help = (
        "Lists an organization's API keys (all organizations' without an argument): prefix, "
        "name, scopes, per-minute cap, last use and status. Never prints a secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", nargs="?", help="The organization's slug")

    def handle(self, *args, **options):
        keys = ApiKey.objects.select_related("organization").order_by("organization__slug", "id")
        if options["organization"]:
            organization = Organization.objects.filter(slug=options["organization"]).first()
            if organization is None:
                raise CommandError(f"No organization with slug {options['organization']!r}")
            keys = keys.filter(organization=organization)
        self.stdout.write("organization\tprefix\tname\tscopes\tcap/min\tlast used\tstatus")
        for key in keys:
            last_used = key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "-"
            self.stdout.write(
                "\t".join(
                    [
                        key.organization.slug,
                        key.prefix,
                        key.name,
                        ",".join(key.scopes) or "(send only)",
                        str(key.rate_limit_per_minute or "-"),
                        last_used,
                        key.status,
                    ]
                )
            )
