import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import ApiKey, Organization, Scope
from accounts.services import create_organization

DEMO_SLUG = "demo"
DEMO_USER = "demo"


def credentials_path():
    # Git-ignored: the only place the demo key's plain text lives (the database has its digest).
    return settings.BASE_DIR / ".demo-credentials.json"


class Command(BaseCommand):
    help = "Creates (once) a demo organization, owner login and API key, and prints them."

    def handle(self, *args, **options):
        path = credentials_path()
        saved = {}
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except ValueError:
                saved = {}

        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        user_model = get_user_model()
        password = saved.get("password")
        if organization is None:
            password = secrets.token_urlsafe(12)
            organization = create_organization(
                name="Demo",
                slug=DEMO_SLUG,
                owner_username=DEMO_USER,
                owner_email="demo@example.com",
                owner_password=password,
                from_name="Demo",
                from_email="demo@example.com",
            )
            user = user_model.objects.get(username=DEMO_USER)
            user.set_password(password)
            user.save(update_fields=["password"])
        elif not password or not user_model.objects.get(username=DEMO_USER).check_password(
            password
        ):
            user = user_model.objects.get(username=DEMO_USER)
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save(update_fields=["password"])
        user = user_model.objects.get(username=DEMO_USER)
        if not user.is_staff:
            # The demo owner may also look at the admin's analytics.
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])

        token = saved.get("api_key", "")
        key = ApiKey.objects.for_token(token) if token else None
        if key is None or key.organization_id != organization.pk:
            # The saved key is gone or invalid: issue a fresh one and revoke older demo keys.
            for old in ApiKey.objects.for_org(organization).filter(name="Demo key"):
                old.revoke()
            key, token = ApiKey.objects.create_key(
                organization=organization,
                name="Demo key",
                scopes=[Scope.SEND_EMAIL, Scope.READ_SENDS],
                created_by=user,
            )

        path.write_text(json.dumps({"password": password, "api_key": token}))
        os.chmod(path, 0o600)

        site = settings.SITE_URL
        self.stdout.write(
            f"""
Fluxomail demo
  organization: {organization.name} ({organization.slug})
  owner login:  {DEMO_USER} / {password}   ({site}/dashboard/, admin at {site}/admin/)
  API key:      {token}

Send a first email:
  curl -X POST "{site}/api/v1/emails/send" \\
    -H "Content-Type: application/json" \\
    -H "Authorization: Bearer {token}" \\
    -H "Idempotency-Key: send-$(date +%s%N)" \\
    -d '{{"to": "user@example.com", "subject": "Hello", "content": "Hi there", \
          "htmlContent": "<p>Hi there</p>"}}'
"""
        )
