import json
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Sum
from rest_framework.test import APIClient

from accounts.management.commands import bootstrap_demo
from accounts.models import ApiKey, Membership, Organization, Scope
from sends.models import Policy, Send
from usage.models import UsageCounter

pytestmark = pytest.mark.django_db


@pytest.fixture
def credentials(tmp_path, monkeypatch):
    path = tmp_path / ".demo-credentials.json"
    monkeypatch.setattr(bootstrap_demo, "credentials_path", lambda: path)
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
    assert set(Policy.objects.filter(organization=organization).values_list("key", flat=True)) == {
        "transactional",
        "bulk",
    }
    key = ApiKey.objects.for_token(printed_key(output))
    assert key is not None and key.organization == organization
    assert key.has_scope(Scope.SEND_EMAIL)
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
    assert [s.status for s in sends] == ["sent", "sent", "sent"]
    assert all(s.public_id in output for s in sends)
    assert [m.subject for m in mailoutbox] == [
        "Welcome to Fluxomail",
        "Your receipt",
        "Reset your password",
    ]
    totals = UsageCounter.objects.filter(organization__slug="demo").aggregate(
        requests=Sum("requests"), sends=Sum("sends"), global_sends=Sum("global_endpoint_sends")
    )
    assert totals == {"requests": 3, "sends": 3, "global_sends": 1}
    run("bootstrap_demo")
    assert Send.objects.filter(organization__slug="demo").count() == 3
    assert len(mailoutbox) == 3


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
    assert [line.split(" via ")[1] for line in lines[:3]] == [
        "send: 'Welcome to Fluxomail'",
        "send: 'Your receipt'",
        "send-global: 'Reset your password'",
    ]
    assert "MIME-Version" not in output and "Content-Transfer-Encoding" not in output
    assert "MIME-Version" not in capsys.readouterr().out  # nothing printed by the backend
    assert lines[-1] == "=" * 72
    block = output[output.index("=" * 72) :]
    for label in ("dashboard:", "owner login:", "API key:", "curl -X POST", "python3 -c"):
        assert label in block
    assert len(lines) < 30
