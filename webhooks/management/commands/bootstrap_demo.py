import json
import os
import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import ApiKey, Organization, Scope
from accounts.services import create_organization
from fluxomail import devserver
from fluxomail.middleware import new_request_id

DEMO_SLUG = "demo"
DEMO_USER = "demo"
KEY_SCOPES = [Scope.SEND_EMAIL, Scope.READ_SENDS, Scope.WEBHOOKS_MANAGE]
# A policy of the demo organization whose mail a worker delivers (DELIVERY_MODE=queue for it).
QUEUED_POLICY = "queued"
# (endpoint, subject, text, policyKey): each is sent once, on the first run that lacks it.
SAMPLES = [
    ("send", "Welcome to Fluxomail", "Thanks for signing up.", None),
    ("send", "Your receipt", "Order 1001: 2 items, 42.00 EUR.", None),
    ("send-global", "Reset your password", "Follow the link to choose a new password.", None),
    ("send", "Your order has shipped", "Order 1001 is on its way.", QUEUED_POLICY),
]


CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


def send_samples(organization, key) -> list[tuple[str, str, str, str]]:
    """A few real sends through the send workflow, counted in usage, so the dashboard has data:
    each sample once (by subject), so that a demo made before a sample existed gets it too.
    The queued one is delivered by a worker (`make run` runs one), the others in the request.

    With the console backend (the default) the samples sent in the request are kept in memory
    instead of printed: MIME messages would bury the credentials. Any other backend delivers
    them.
    """
    if settings.EMAIL_BACKEND == CONSOLE_BACKEND:
        from django.test.utils import override_settings

        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
            return _send_samples(organization, key)
    return _send_samples(organization, key)


def _send_samples(organization, key) -> list[tuple[str, str, str, str]]:
    from sends import services
    from sends.models import Send
    from sends.serializers import SendEmailSerializer
    from usage import recording

    sent_before = set(
        Send.objects.filter(organization=organization).values_list("subject", flat=True)
    )
    send_ids = []
    for endpoint, subject, text, policy_key in SAMPLES:
        if subject in sent_before:
            continue
        body = {
            "to": "user@example.com",
            "subject": subject,
            "content": text,
            "htmlContent": f"<p>{text}</p><p><a href='https://example.com/account'>Account</a></p>",
        }
        if policy_key:
            body["policyKey"] = policy_key
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
        send_ids.append((result.body["sendId"], endpoint, subject, result.body["status"]))
    recording.flush()
    return send_ids


def demo_endpoint(organization, url: str, saved_id: str):
    """The demo's webhook endpoint (every event), pointed at `url`: the one saved by an earlier
    run (or left by one: on 127.0.0.1, path /webhooks), else a new one."""
    from webhooks import targets
    from webhooks.api import create_endpoint, set_enabled
    from webhooks.models import Endpoint

    try:
        targets.check_new_url(url)
    except targets.UnsafeTarget as exc:
        raise CommandError(
            f"The demo's webhook receiver {url} is refused: {exc} "
            "(make run sets WEBHOOK_ALLOW_PRIVATE_TARGETS=true; has it been turned off?)"
        ) from None
    endpoints = Endpoint.objects.for_org(organization)
    endpoint = endpoints.filter(public_id=saved_id).first() if saved_id else None
    if endpoint is None:
        endpoint = next(
            (
                candidate
                for candidate in endpoints.order_by("pk")
                if candidate.url.startswith("http://127.0.0.1:")
                and candidate.url.endswith("/webhooks")
            ),
            None,
        )
    if endpoint is None:
        return create_endpoint(organization, url=url, event_types=["email.*"], enabled=True)
    if endpoint.disabled_reason:
        # Disabled by the service while no receiver ran (a user's switch-off is respected).
        set_enabled(endpoint, True)
    endpoint.url = url
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["url", "enabled", "consecutive_failures", "disabled_reason",
                                 "updated_at"])  # fmt: skip
    return endpoint


def _private(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)


def banner_path():
    return devserver.BANNER


def credentials_path():
    # Git-ignored: the only place the demo key's plain text lives (the database has its digest).
    return devserver.CREDENTIALS


def webhook_state_path():
    # Git-ignored (var/): what `make run`'s receiver needs, rewritten by every run.
    return devserver.WEBHOOK_STATE


class Command(BaseCommand):
    help = "Creates (once) a demo organization, owner login and API key, and prints them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--webhook-url",
            default="",
            help="Point the demo's webhook endpoint (created once) at this receiver.",
        )
        parser.add_argument(
            "--no-banner",
            action="store_true",
            help="Only write the credentials block to var/demo-banner.txt (make run prints it).",
        )

    def handle(self, *args, **options):
        from sends.models import Policy

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
                scopes=KEY_SCOPES,
                created_by=user,
            )
        elif not set(KEY_SCOPES) <= set(key.scopes):
            # A key of an older demo: it may manage the webhook endpoint too.
            key.scopes = [*key.scopes, *(s for s in KEY_SCOPES if s not in key.scopes)]
            key.save(update_fields=["scopes"])

        Policy.objects.get_or_create(
            organization=organization,
            key=QUEUED_POLICY,
            defaults={"delivery_mode": Policy.DeliveryMode.QUEUE},
        )
        endpoint = None
        if options["webhook_url"]:
            # Before the samples: an endpoint receives the events recorded after its creation.
            endpoint = demo_endpoint(
                organization, options["webhook_url"], saved.get("webhook_endpoint", "")
            )
        kept = {"password": password, "api_key": token}
        if endpoint is not None or saved.get("webhook_endpoint"):
            kept["webhook_endpoint"] = endpoint.public_id if endpoint else saved["webhook_endpoint"]
        _private(path, json.dumps(kept))
        samples = send_samples(organization, key)
        if endpoint is not None:
            state = {
                "endpoint": endpoint.public_id,
                "url": endpoint.url,
                "secret": endpoint.secret,
                "samples": [send_id for send_id, *_ in samples],
            }
            _private(webhook_state_path(), json.dumps(state))

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
        for send_id, via, subject, status in samples:
            later = " (queued: a worker delivers it)" if status == "queued" else ""
            self.stdout.write(f"sample send {send_id} via {via}: {subject!r}{later}")
        headers = json.dumps(
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
        python = (
            "python3 -c 'import json, urllib.request as u; print(u.urlopen(u.Request("
            f'"{site}/api/v1/emails/send", data=json.dumps({body}).encode(), '
            f"headers={headers})).read().decode())'"
        )
        webhooks = ""
        if endpoint is not None:
            webhooks = (
                f"  webhooks:     {endpoint.public_id} posts every event to {endpoint.url}\n"
                "                (make run's receiver: one line each here and in "
                "var/log/webhooks.log)\n"
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
{webhooks}
Send a first email with curl:
  curl -X POST "{site}/api/v1/emails/send" \\
    -H "Content-Type: application/json" \\
    -H "Authorization: Bearer {token}" \\
    -H "Idempotency-Key: send-$(date +%s%N)" \\
    -d '{body}'

or with Python:
  {python}
With "policyKey": "{QUEUED_POLICY}" in the body a worker delivers it (answer: "status": "queued").
{rule}
"""
        if not options["no_banner"]:
            self.stdout.write(banner)
        # `make run`'s launcher prints it once the server answers, so that the terminal ends
        # with it (git-ignored, like the credentials file, and as private).
        _private(banner_path(), banner)
