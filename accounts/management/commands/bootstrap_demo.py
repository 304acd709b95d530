import json
import os
import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import ApiKey, Organization, Scope
from accounts.services import create_organization
from fluxomail.middleware import new_request_id

DEMO_SLUG = "demo"
DEMO_USER = "demo"
SAMPLES = [
    ("send", "Welcome to Fluxomail", "Thanks for signing up."),
    ("send", "Your receipt", "Order 1001: 2 items, 42.00 EUR."),
    ("send-global", "Reset your password", "Follow the link to choose a new password."),
]


CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


def send_samples(organization, key) -> list[tuple[str, str, str]]:
    """A few real sends through the send workflow, counted in usage, so the dashboard has data.

    With the console backend (the default) the samples are kept in memory instead of printed:
    three MIME messages would bury the credentials. Any other backend delivers them.
    """
    if settings.EMAIL_BACKEND == CONSOLE_BACKEND:
        from django.test.utils import override_settings

        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
            return _send_samples(organization, key)
    return _send_samples(organization, key)


def _send_samples(organization, key) -> list[tuple[str, str, str]]:
    from sends import services
    from sends.serializers import SendEmailSerializer
    from usage import recording

    send_ids = []
    for endpoint, subject, text in SAMPLES:
        body = {
            "to": "user@example.com",
            "subject": subject,
            "content": text,
            "htmlContent": f"<p>{text}</p><p><a href='https://example.com/account'>Account</a></p>",
        }
        serializer = SendEmailSerializer(data=body, context={"organization": organization})
        serializer.is_valid(raise_exception=True)
        started = time.monotonic()
        result = services.send_email(
            org=organization,
            key=key,
            endpoint=endpoint,
            data=serializer.validated_data,
            request_id=new_request_id(),
            policy=serializer.policy,
        )
        recording.record(
            recording.Outcome(
                organization_id=organization.pk,
                api_key_id=key.pk,
                endpoint=endpoint,
                status=200,
                sent=True,
                latency_ms=int((time.monotonic() - started) * 1000),
            )
        )
        send_ids.append((result.body["sendId"], endpoint, subject))
    recording.flush()
    return send_ids


def banner_path():
    return settings.BASE_DIR / "var" / "demo-banner.txt"


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
        created = organization is None
        user_model = get_user_model()
        password = saved.get("password")
        if created:
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
        samples = send_samples(organization, key) if created else []

        site = settings.SITE_URL
        # One line: inside the shell's single quotes a backslash-newline would reach the JSON.
        body = json.dumps(
            {
                "to": "user@example.com",
                "subject": "Hello",
                "content": "Hi there",
                "htmlContent": "<p>Hi there</p>",
            }
        )
        for send_id, endpoint, subject in samples:
            self.stdout.write(f"sample send {send_id} via {endpoint}: {subject!r}")
        headers = json.dumps(
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
        python = (
            "python3 -c 'import json, urllib.request as u; print(u.urlopen(u.Request("
            f'"{site}/api/v1/emails/send", data=json.dumps({body}).encode(), '
            f"headers={headers})).read().decode())'"
        )
        rule = "=" * 72
        banner = f"""
{rule}
Fluxomail demo is ready
  dashboard:    {site}/dashboard/   (admin: {site}/admin/)
  owner login:  {DEMO_USER} / {password}
  organization: {organization.name} ({organization.slug})
  API key:      {token}
  API docs:     {site}/api/v1/docs

Send a first email with curl:
  curl -X POST "{site}/api/v1/emails/send" \\
    -H "Content-Type: application/json" \\
    -H "Authorization: Bearer {token}" \\
    -H "Idempotency-Key: send-$(date +%s%N)" \\
    -d '{body}'

or with Python:
  {python}
{rule}
"""
        self.stdout.write(banner)
        # `make run`'s launcher prints it again once the server answers, so that the terminal
        # ends with it (git-ignored, like the credentials file, and as private).
        banner_path().parent.mkdir(parents=True, exist_ok=True)
        banner_path().write_text(banner)
        os.chmod(banner_path(), 0o600)
