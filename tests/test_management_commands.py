"""The commands an operator reaches for: list and revoke keys, pause and resume an organization."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, Organization


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_listkeys_shows_every_key_without_its_secret(alice_key, send_key, charlie_key):
    everyone = run("listkeys")
    acme_only = run("listkeys", "acme")

    assert everyone.splitlines()[0].split("\t")[:3] == ["organization", "prefix", "name"]
    assert len(everyone.splitlines()) == 4
    assert len(acme_only.splitlines()) == 3
    assert send_key.key.prefix in acme_only and charlie_key.key.prefix not in acme_only
    assert "acme\t" + send_key.key.prefix + "\talice send\tsend_email\t-\t-\tactive" in acme_only
    for key in (alice_key, send_key, charlie_key):
        assert key.token not in everyone


def test_revokekey_refuses_the_key_from_the_next_request(api, send_key, seed_body):
    output = run("revokekey", send_key.key.prefix)
    response = api.post("/api/v1/emails/send", seed_body, format="json", **send_key.bearer)

    assert output == f"Revoked {send_key.key.prefix} (alice send) of acme.\n"
    assert ApiKey.objects.get(pk=send_key.key.pk).status == "revoked"
    assert response.status_code == 401
    assert run("revokekey", send_key.key.prefix).endswith("was already revoked.\n")


def test_pauseorg_and_resumeorg(api, send_key, seed_body):
    assert run("pauseorg", "acme") == "acme paused.\n"
    paused = api.post("/api/v1/emails/send", seed_body, format="json", **send_key.bearer)
    assert run("resumeorg", "acme") == "acme resumed.\n"
    resumed = api.post("/api/v1/emails/send", seed_body, format="json", **send_key.bearer)

    assert paused.status_code == 403 and paused.json()["code"] == "tenant_paused"
    assert resumed.status_code == 200
    assert Organization.objects.get(slug="acme").paused is False


@pytest.mark.parametrize(
    "args",
    [("listkeys", "nope"), ("revokekey", "flx_zzzzzzzz"), ("pauseorg", "nope"), ("resumeorg", "x")],
)
def test_unknown_names_are_a_clear_error(db, args):
    with pytest.raises(CommandError):
        run(*args)


@pytest.mark.parametrize("command", ["listkeys", "revokekey", "pauseorg", "resumeorg"])
def test_every_command_says_what_it_does_in_its_help(command):
    from django.core.management import load_command_class

    help_text = load_command_class("accounts", command).help
    assert len(help_text) > 40
