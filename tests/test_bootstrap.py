import json
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Sum
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization
from sends.models import Policy, QueuedSend, Send
from usage.models import UsageCounter
from webhooks.management.commands import bootstrap_demo
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def credentials(tmp_path, monkeypatch):
    """The demo's files in tmp_path, never in the checkout (a developer's own demo)."""
    path = tmp_path / ".demo-credentials.json"
    monkeypatch.setattr(bootstrap_demo, "credentials_path", lambda: path)
    monkeypatch.setattr(bootstrap_demo, "banner_path", lambda: tmp_path / "var" / "banner.txt")
    monkeypatch.setattr(
        bootstrap_demo, "webhook_state_path", lambda: tmp_path / "var" / "demo-webhook.json"
    )
    return path


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def printed_key(output: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if "API key:" in line)


def test_bootstrap_demo_creates_org_owner_and_working_key(credentials):
    output = run("bootstrap_demo")
    organization = Organization.objects.get(slug="demo")
    user = get_user_model().objects.get(username="demo")
    assert Membership.objects.get(user=user).role == "owner"
    policies = Policy.objects.filter(organization=organization)
    assert dict(policies.values_list("key", "delivery_mode")) == {
        "transactional": "",
        "bulk": "",
        "queued": "queue",
    }
    key = ApiKey.objects.for_token(printed_key(output))
    assert key is not None and key.organization == organization
    assert key.scopes == ["send_email", "read_sends", "webhooks_manage"]
    assert 'curl -X POST "http://127.0.0.1:8000/api/v1/emails/send"' in output
    assert f"Authorization: Bearer {printed_key(output)}" in output
    # The printed body is one line of JSON that the send API takes as it is.
    body = json.loads(re.search(r"^    -d '(.*)'$", output, re.MULTILINE).group(1))
    response = APIClient().post(
        "/api/v1/emails/send",
        body,
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {printed_key(output)}",
    )
    assert response.status_code == 200
    sent = Send.objects.get(public_id=response.json()["sendId"])
    assert (sent.to, sent.subject, sent.status) == ("user@example.com", "Hello", "sent")
    saved = json.loads(credentials.read_text())
    assert user.check_password(saved["password"])
    assert saved["password"] in output


def test_bootstrap_demo_sends_samples_once_and_counts_them(credentials, mailoutbox):
    output = run("bootstrap_demo")
    sends = Send.objects.filter(organization__slug="demo").order_by("public_id")
    assert [(s.subject, s.status) for s in sends] == [
        ("Welcome to Fluxomail", "sent"),
        ("Your receipt", "sent"),
        ("Reset your password", "sent"),
        ("Your order has shipped", "queued"),
    ]
    assert all(s.public_id in output for s in sends)
    # The queued one waits for a worker (make run starts one), with its job.
    assert [m.subject for m in mailoutbox] == [
        "Welcome to Fluxomail",
        "Your receipt",
        "Reset your password",
    ]
    assert list(QueuedSend.objects.values_list("send__subject", flat=True)) == [
        "Your order has shipped"
    ]
    totals = UsageCounter.objects.filter(organization__slug="demo").aggregate(
        requests=Sum("requests"), sends=Sum("sends"), global_sends=Sum("global_endpoint_sends")
    )
    assert totals == {"requests": 4, "sends": 4, "global_sends": 1}
    run("bootstrap_demo")
    assert Send.objects.filter(organization__slug="demo").count() == 4
    assert len(mailoutbox) == 3


def test_bootstrap_demo_sends_a_sample_an_older_demo_lacks(credentials, mailoutbox):
    run("bootstrap_demo")
    Send.objects.filter(subject="Your order has shipped").delete()  # a demo made before it

    output = run("bootstrap_demo")

    (line,) = [line for line in output.splitlines() if line.startswith("sample send")]
    assert line.endswith("via send: 'Your order has shipped' (queued: a worker delivers it)")
    assert Send.objects.filter(organization__slug="demo").count() == 4
    assert len(mailoutbox) == 3


def test_bootstrap_demo_points_one_endpoint_at_the_receiver_and_keeps_its_secret(
    credentials, tmp_path
):
    output = run("bootstrap_demo", "--webhook-url", "http://127.0.0.1:8101/webhooks")
    endpoint = Endpoint.objects.get(organization__slug="demo")
    assert (endpoint.url, endpoint.event_types, endpoint.enabled) == (
        "http://127.0.0.1:8101/webhooks",
        ["email.*"],
        True,
    )
    state_path = tmp_path / "var" / "demo-webhook.json"
    state = json.loads(state_path.read_text())
    samples = list(
        Send.objects.filter(organization__slug="demo")
        .order_by("public_id")
        .values_list("public_id", flat=True)
    )
    assert state == {
        "endpoint": endpoint.public_id,
        "url": "http://127.0.0.1:8101/webhooks",
        "secret": endpoint.secret,
        "samples": samples,
    }
    assert state_path.stat().st_mode & 0o777 == 0o600
    assert json.loads(credentials.read_text())["webhook_endpoint"] == endpoint.public_id
    assert f"webhooks:     {endpoint.public_id} posts every event to http://127.0.0.1:8101/" in (
        output
    )

    # The next run's receiver listens elsewhere: the same endpoint and secret follow it.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, consecutive_failures=20, disabled_reason="Disabled on …"
    )
    run("bootstrap_demo", "--webhook-url", "http://127.0.0.1:8102/webhooks")
    again = Endpoint.objects.get(organization__slug="demo")
    assert (again.pk, again.secret, again.url) == (
        endpoint.pk,
        endpoint.secret,
        "http://127.0.0.1:8102/webhooks",
    )
    assert (again.enabled, again.consecutive_failures, again.disabled_reason) == (True, 0, "")
    assert json.loads(state_path.read_text())["samples"] == []  # sent once, by the first run

    # Without the saved id (credentials lost), the demo's endpoint is still found, not doubled.
    credentials.unlink()
    run("bootstrap_demo", "--webhook-url", "http://127.0.0.1:8103/webhooks")
    assert list(Endpoint.objects.values_list("pk", "url")) == [
        (endpoint.pk, "http://127.0.0.1:8103/webhooks")
    ]


def test_bootstrap_demo_keeps_an_endpoint_switched_off_by_its_owner_off(credentials):
    run("bootstrap_demo", "--webhook-url", "http://127.0.0.1:8101/webhooks")
    Endpoint.objects.update(enabled=False)

    run("bootstrap_demo", "--webhook-url", "http://127.0.0.1:8102/webhooks")

    assert list(Endpoint.objects.values_list("url", "enabled")) == [
        ("http://127.0.0.1:8102/webhooks", False)
    ]


def test_bootstrap_demo_refuses_a_private_receiver_when_the_guard_is_on(credentials, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(CommandError, match="WEBHOOK_ALLOW_PRIVATE_TARGETS=true"):
        run("bootstrap_demo", "--webhook-url", "http://127.0.0.1:8101/webhooks")
    assert not Endpoint.objects.exists()
    assert not Send.objects.exists()


def test_bootstrap_demo_gives_an_older_demo_key_the_webhooks_scope(credentials):
    token = printed_key(run("bootstrap_demo"))
    ApiKey.objects.filter(organization__slug="demo").update(scopes=["send_email", "read_sends"])

    assert printed_key(run("bootstrap_demo")) == token
    key = ApiKey.objects.for_token(token)
    assert key.scopes == ["send_email", "read_sends", "webhooks_manage"]
    response = APIClient().get("/api/v1/webhook-endpoints", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


def test_bootstrap_demo_twice_creates_nothing_new_and_key_still_works(credentials):
    first = printed_key(run("bootstrap_demo"))
    second_output = run("bootstrap_demo")
    second = printed_key(second_output)
    assert Organization.objects.filter(slug="demo").count() == 1
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert second == first
    assert ApiKey.objects.for_token(second) is not None
    assert ApiKey.objects.filter(organization__slug="demo").count() == 1


def test_bootstrap_demo_without_saved_key_issues_fresh_one_and_revokes_old(credentials):
    first = printed_key(run("bootstrap_demo"))
    credentials.unlink()
    output = run("bootstrap_demo")
    second = printed_key(output)
    assert second != first
    assert ApiKey.objects.for_token(first) is None
    assert ApiKey.objects.for_token(second) is not None
    assert Organization.objects.filter(slug="demo").count() == 1
    password = json.loads(credentials.read_text())["password"]
    assert get_user_model().objects.get(username="demo").check_password(password)


def test_createorg_creates_org_with_owner_and_policies():
    output = run("createorg", "Initech", "--owner", "peter", "--password", "s3cret-pass")
    organization = Organization.objects.get(slug="initech")
    assert "Organization: Initech (initech)" in output
    assert Membership.objects.get(organization=organization).user.username == "peter"
    assert Policy.objects.filter(organization=organization).count() == 2


def test_createorg_refuses_a_taken_slug():
    run("createorg", "Initech", "--owner", "peter")
    with pytest.raises(CommandError, match="exists already"):
        run("createorg", "Initech", "--owner", "samir")


def test_createapikey_prints_a_working_key_once(acme):
    output = run(
        "createapikey",
        "acme",
        "--name",
        "ci",
        "--scopes",
        "send_email,read_sends",
        "--rate-limit",
        "5",
    )
    token = output.strip().splitlines()[-1]
    key = ApiKey.objects.for_token(token)
    assert key.name == "ci"
    assert key.scopes == ["send_email", "read_sends"]
    assert key.rate_limit_per_minute == 5
    assert token not in str(ApiKey.objects.filter(pk=key.pk).values().get())


def test_createapikey_refuses_unknown_scope(acme):
    with pytest.raises(CommandError, match="Unknown scopes: send_everything"):
        run("createapikey", "acme", "--scopes", "send_everything")


def test_createapikey_refuses_a_name_with_a_control_character(acme):
    message = (
        "--name: Key names may not contain control characters (tabs and line breaks included)."
    )
    with pytest.raises(CommandError, match=re.escape(message)):
        run("createapikey", "acme", "--name", "ctl\x01name")
    assert not ApiKey.objects.exists()


def test_createapikey_refuses_an_expiry_past_the_calendar(acme):
    with pytest.raises(CommandError, match="--expires-in-days goes past the year 9999"):
        run("createapikey", "acme", "--expires-in-days", "3000000")
    assert not ApiKey.objects.exists()


def test_createapikey_refuses_unknown_org(db):
    with pytest.raises(CommandError, match="No organization with slug 'nope'"):
        run("createapikey", "nope")


def test_bootstrap_demo_prints_a_line_per_sample_and_ends_with_the_credentials(
    credentials, settings, capsys
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    output = run("bootstrap_demo")

    lines = output.strip().splitlines()
    assert [line.split(" via ")[1] for line in lines[:4]] == [
        "send: 'Welcome to Fluxomail'",
        "send: 'Your receipt'",
        "send-global: 'Reset your password'",
        "send: 'Your order has shipped' (queued: a worker delivers it)",
    ]
    assert "MIME-Version" not in output and "Content-Transfer-Encoding" not in output
    assert "MIME-Version" not in capsys.readouterr().out  # nothing printed by the backend
    assert lines[-1] == "=" * 72
    block = output[output.index("=" * 72) :]
    for label in ("dashboard:", "owner login:", "API key:", "curl -X POST", "python3 -c"):
        assert label in block
    assert len(lines) < 30


def test_bootstrap_demo_no_banner_only_writes_it(credentials, tmp_path):
    output = run("bootstrap_demo", "--no-banner")

    assert "=" * 72 not in output
    assert [line.split(" via ")[0][:12] for line in output.strip().splitlines()] == [
        "sample send "
    ] * 4
    banner = (tmp_path / "var" / "banner.txt").read_text()
    assert printed_key(banner) == json.loads(credentials.read_text())["api_key"]
