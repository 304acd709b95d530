"""The dashboard's API keys page: list, create (shown once), revoke; who may do what."""

import re

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from accounts.models import ApiKey, Scope, key_digest


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice.user)
    return client


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob.user)
    return client


def shown_token(html: str) -> str | None:
    match = re.search(r'<code id="new-key">([^<]+)</code>', html)
    return match.group(1) if match else None


def test_keys_page_lists_the_organizations_keys(alice_client, alice, make_key, charlie_key):
    key = make_key(alice.organization, name="web", scopes=[Scope.SEND_EMAIL], rate_limit=60)
    make_key(alice.organization, name="old").key.revoke()
    response = alice_client.get("/dashboard/keys/")
    assert response.status_code == 200
    html = response.content.decode()
    row = re.search(rf'<tr data-key="{key.key.public_id}">(.*?)</tr>', html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
    assert cells[:4] == ["web", f"{key.key.prefix}…", "send_email", "60"]
    assert cells[5:7] == ["never", "active"]
    assert ">revoked</span>" in html
    assert "charlie all" not in html
    assert shown_token(html) is None
    assert response["Cache-Control"].startswith("max-age=0")


def test_owner_creates_a_key_and_sees_it_once(alice_client, alice):
    response = alice_client.post(
        "/dashboard/keys/",
        {"name": "ci", "scopes": [Scope.SEND_EMAIL, Scope.READ_SENDS], "rate_limit_per_minute": 30},
    )
    assert response.status_code == 201
    html = response.content.decode()
    token = shown_token(html)
    assert token is not None and token.startswith("flx_")
    assert "you will not see this again" in html
    assert "no-store" in response["Cache-Control"]

    key = ApiKey.objects.get(name="ci")
    assert key.organization == alice.organization
    assert key.scopes == [Scope.SEND_EMAIL, Scope.READ_SENDS]
    assert key.rate_limit_per_minute == 30
    assert key.created_by == alice.user
    assert key.digest == key_digest(token)
    assert ApiKey.objects.for_token(token) == key

    # The plain token is nowhere in the database (the session included) nor in a cookie.
    secret = token.split("_", 2)[2]
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert not any(secret in str(value) for value in row), table
    for session in Session.objects.all():
        assert secret not in str(session.get_decoded())
    assert all(secret not in morsel.value for morsel in response.cookies.values())

    # Shown once: the next visit lists the key by prefix only.
    again = alice_client.get("/dashboard/keys/").content.decode()
    assert shown_token(again) is None
    assert secret not in again
    assert f"{key.prefix}…" in again


def test_key_without_scopes_or_cap_is_created_as_such(alice_client):
    response = alice_client.post("/dashboard/keys/", {"name": "plain"})
    assert response.status_code == 201
    key = ApiKey.objects.get(name="plain")
    assert key.scopes == []
    assert key.rate_limit_per_minute is None


def test_invalid_key_form_creates_nothing(alice_client):
    response = alice_client.post(
        "/dashboard/keys/", {"name": "", "scopes": ["root"], "rate_limit_per_minute": 0}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "This field is required." in html
    assert shown_token(html) is None
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["ctl\x01name", "tab\tname", "two\nlines", "n\x85el", "l\u2028s"])
def test_a_key_name_with_a_control_character_is_refused(alice_client, name):
    response = alice_client.post("/dashboard/keys/", {"name": name, "scopes": [Scope.SEND_EMAIL]})

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "name": ["Key names may not contain control characters (tabs and line breaks included)."]
    }
    assert shown_token(response.content.decode()) is None
    assert not ApiKey.objects.exists()


def test_member_sees_keys_but_no_controls(bob_client, alice, make_key):
    key = make_key(alice.organization, name="web")
    html = bob_client.get("/dashboard/keys/").content.decode()
    assert "web" in html
    assert 'id="create-key"' not in html
    assert f"/dashboard/keys/{key.key.public_id}/revoke" not in html
    assert "Only the organization's owners and admins" in html


def test_member_cannot_create_a_key(bob_client):
    response = bob_client.post("/dashboard/keys/", {"name": "sneaky"})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_member_cannot_revoke_a_key(bob_client, alice, make_key, method):
    key = make_key(alice.organization, name="web")
    response = getattr(bob_client, method)(f"/dashboard/keys/{key.key.public_id}/revoke")
    assert response.status_code == 403
    key.key.refresh_from_db()
    assert key.key.revoked_at is None


def test_admin_member_may_manage_keys(client, bob):
    bob.user.memberships.update(role="admin")
    client.force_login(bob.user)
    assert client.post("/dashboard/keys/", {"name": "by admin"}).status_code == 201


def test_revoke_asks_for_confirmation_then_revokes(alice_client, alice, make_key, api):
    key = make_key(alice.organization, name="web")
    url = f"/dashboard/keys/{key.key.public_id}/revoke"
    confirm = alice_client.get(url)
    assert confirm.status_code == 200
    assert "Revoke web?" in confirm.content.decode()
    key.key.refresh_from_db()
    assert key.key.revoked_at is None

    response = alice_client.post(url)
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/keys/"
    key.key.refresh_from_db()
    assert key.key.status == "revoked"
    page = alice_client.get("/dashboard/keys/").content.decode()
    assert f"Revoked web ({key.key.prefix}…)." in page

    answer = api.post("/api/v1/emails/send", {}, format="json", **key.bearer)
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_key"


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_organizations_key_is_404(alice_client, charlie_key, method):
    response = getattr(alice_client, method)(f"/dashboard/keys/{charlie_key.key.public_id}/revoke")
    assert response.status_code == 404
    charlie_key.key.refresh_from_db()
    assert charlie_key.key.revoked_at is None


def test_forms_need_a_csrf_token(alice, make_key):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    key = make_key(alice.organization, name="web")
    assert client.post("/dashboard/keys/", {"name": "x"}).status_code == 403
    assert client.post(f"/dashboard/keys/{key.key.public_id}/revoke").status_code == 403
    assert not ApiKey.objects.filter(name="x").exists()
    key.key.refresh_from_db()
    assert key.key.revoked_at is None
