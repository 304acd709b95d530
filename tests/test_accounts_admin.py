import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.models import Session

from accounts.models import ApiKey, Organization, key_digest

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "op@example.com", "pw-operator")
    client.force_login(user)
    return user


def test_admin_key_creation_shows_the_secret_once(client, operator, acme):
    response = client.post(
        "/admin/accounts/apikey/add/",
        {
            "organization": acme.pk,
            "name": "from admin",
            "scopes": ["send_email", "read_sends"],
            "rate_limit_per_minute": "30",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="from admin")
    page = response.content.decode()
    token = re.search(rf"flx_{key.public_id}_[A-Za-z0-9]+", page).group(0)
    assert page.count(token) == 1
    assert "you will not see it again" in page
    # Not kept anywhere: no session row, no admin log entry holds it.
    assert all(token not in s.get_decoded().__repr__() for s in Session.objects.all())
    assert all(token not in e.change_message for e in LogEntry.objects.all())
    assert key_digest(token) == key.digest
    assert key.scopes == ["send_email", "read_sends"]
    assert key.rate_limit_per_minute == 30
    assert key.created_by == operator
    # The next page does not show it again, and neither does the key's change page.
    again = client.get("/admin/accounts/apikey/").content.decode()
    assert token not in again
    change = client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert token not in change
    assert key.digest not in change


def test_admin_refuses_a_key_name_with_a_control_character(client, operator, acme):
    response = client.post(
        "/admin/accounts/apikey/add/",
        {"organization": acme.pk, "name": "ctl\x01name", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "name": ["Key names may not contain control characters (tabs and line breaks included)."]
    }
    assert not ApiKey.objects.exists()


def test_admin_revoke_action_revokes_keys(client, operator, send_key):
    client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke", "_selected_action": [send_key.key.pk]},
    )
    send_key.key.refresh_from_db()
    assert send_key.key.revoked_at is not None
    assert ApiKey.objects.for_token(send_key.token) is None


def test_admin_pause_and_resume_actions(client, operator, acme):
    client.post("/admin/accounts/organization/", {"action": "pause", "_selected_action": [acme.pk]})
    assert Organization.objects.get(pk=acme.pk).paused is True
    client.post(
        "/admin/accounts/organization/", {"action": "resume", "_selected_action": [acme.pk]}
    )
    assert Organization.objects.get(pk=acme.pk).paused is False


def test_admin_is_refused_to_non_staff(client, alice):
    client.force_login(alice.user)
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.usefixtures("still_clock")
def test_admin_login_is_throttled_and_shares_the_owners_login_counters(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")
    checked = []

    def on_failure(sender, credentials, **kwargs):
        checked.append(credentials["username"])

    user_login_failed.connect(on_failure)
    try:
        # Five guesses on the owners' page, five on the admin's: one budget for both.
        for i in range(5):
            client.post("/accounts/login/", {"username": "root", "password": f"guess{i}"})
        for i in range(5):
            response = client.post(
                "/admin/login/?next=/admin/", {"username": "root", "password": f"again{i}"}
            )
            assert response.status_code == 200
        response = client.post(
            "/admin/login/?next=/admin/",
            {"username": "root", "password": "pw-root", "next": "/admin/"},
        )
    finally:
        user_login_failed.disconnect(on_failure)

    # The right password is not even checked while the minute lasts.
    assert response.status_code == 429
    assert "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert checked == ["root"] * 10


def test_admin_login_still_works_below_the_limit(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")
    client.post("/admin/login/", {"username": "root", "password": "wrong"})
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "pw-root", "next": "/admin/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.session["_auth_user_id"]


@pytest.mark.usefixtures("still_clock")
def test_a_look_alike_username_counts_against_the_same_budget(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")
    for i in range(10):
        client.post(
            "/admin/login/", {"username": "root", "password": "x"}, REMOTE_ADDR=f"10.0.0.{i}"
        )
    # Django logs "ｒoot" (a full-width r) in as root: it gets no budget of its own.
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "\uff52oot", "password": "pw-root", "next": "/admin/"},
        REMOTE_ADDR="10.0.1.1",
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.usefixtures("still_clock")
def test_a_throttled_post_from_a_signed_in_operator_still_shows_the_message(client, operator):
    for _ in range(10):
        client.post("/admin/login/", {"username": "someone", "password": "x"})
    response = client.post("/admin/login/", {"username": "operator", "password": "pw-operator"})
    assert response.status_code == 429
    assert "Too many login attempts" in response.content.decode()
    assert "Location" not in response


def test_admin_is_branded_and_shows_a_sends_cc_and_attempts_as_addresses(client, operator, acme):
    from sends.models import Message, Send

    send = Send.objects.create(
        organization=acme, endpoint="send", to="to@example.com", subject="Hi", status="sent",
        cc=["cc@example.com", "cc2@example.com"], bcc=["bcc@example.com"],
        attachments=[{"filename": "invoice.pdf", "contentType": "application/pdf", "size": 13}],
    )  # fmt: skip
    Message.objects.create(
        send=send, from_email="a@acme.test", to=["to@example.com", "cc@example.com"],
        provider="smtp",
    )  # fmt: skip
    index = client.get("/admin/").content.decode()
    assert "<title>Operations | Fluxomail admin</title>" in index
    assert "Fluxomail administration" in index
    page = client.get(f"/admin/sends/send/{send.pk}/change/").content.decode()
    assert "cc@example.com, cc2@example.com" in page
    assert "[&quot;cc@example.com" not in page
    assert "to@example.com, cc@example.com" in page
    assert "Attempt via smtp at " in page
    assert f"{send.pk} attempt " not in page
    assert "<div>invoice.pdf · application/pdf · 13\xa0bytes</div>" in page
