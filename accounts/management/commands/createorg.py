import secrets

from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from accounts.models import Organization
from accounts.services import create_organization


class Command(BaseCommand):
    help = "Creates an organization and its owner login."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--slug", default="")
        parser.add_argument("--owner", required=True, help="Owner's username")
        parser.add_argument("--email", default="", help="Owner's email")
        parser.add_argument("--password", help="Owner's password (generated when left out)")
        parser.add_argument("--from-name", default="")
        parser.add_argument("--from-email", default="")

    def handle(self, *args, **options):
        slug = options["slug"] or slugify(options["name"])
        if not slug:
            raise CommandError("The organization needs a name or slug made of letters or digits")
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"An organization with slug {slug!r} exists already")
        password = options["password"] or secrets.token_urlsafe(12)
        organization = create_organization(
            name=options["name"],
            slug=slug,
            owner_username=options["owner"],
            owner_email=options["email"],
            owner_password=password,
            from_name=options["from_name"],
            from_email=options["from_email"],
        )
        self.stdout.write(f"Organization: {organization.name} ({organization.slug})")
        self.stdout.write(f"Owner login:  {options['owner']}")
        if not options["password"]:
            self.stdout.write(f"Password:     {password}")
