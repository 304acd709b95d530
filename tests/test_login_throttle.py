"""The login throttle with its cache (Redis) unreachable: the owners' login page and the admin's
follow RATELIMIT_FAIL_OPEN, like the send API's caps, and log nothing of the attempt."""

import pytest
from django.contrib.auth.signals import user_login_failed

OWNERS = "/accounts/login/"
ADMIN = "/admin/login/?next=/admin/"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unreachable_cache")]


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1")


@pytest.mark.parametrize("page, landing", [(OWNERS, "/dashboard/"), (ADMIN, "/admin/")])
def test_with_the_cache_down_a_correct_password_logs_in_and_a_warning_is_logged(
    client, operator, caplog, page, landing
):
    from accounts.models import Membership, Organization

    organization = Organization.objects.create(name="Ops", slug="ops")
    Membership.objects.create(user=operator, organization=organization)

    response = client.post(page, {"username": "root", "password": "pw-root-1", "next": landing})

    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == landing
    assert client.session["_auth_user_id"] == str(operator.pk)
    warnings = [r.getMessage() for r in caplog.records if r.name == "fluxomail.ratelimit"]
    assert warnings == ["rate limit not enforced: cache unavailable (ConnectionError)"] * 2
    assert "pw-root-1" not in caplog.text
    assert "root" not in "".join(warnings)


@pytest.mark.parametrize("page", [OWNERS, ADMIN])
def test_with_the_cache_down_a_wrong_password_gets_the_usual_form_error(client, operator, page):
    response = client.post(page, {"username": "root", "password": "wrong"})

    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("page", [OWNERS, ADMIN])
def test_with_the_cache_down_and_fail_open_off_logins_are_refused_unchecked(
    client, operator, settings, page
):
    settings.RATELIMIT_FAIL_OPEN = False
    checked = []

    def on_failure(sender, credentials, **kwargs):
        checked.append(credentials["username"])

    user_login_failed.connect(on_failure)
    try:
        wrong = client.post(page, {"username": "root", "password": "wrong"})
        right = client.post(page, {"username": "root", "password": "pw-root-1"})
    finally:
        user_login_failed.disconnect(on_failure)

    for response in (wrong, right):
        assert response.status_code == 503
        assert "Logging in is unavailable for a moment. Try again in a minute." in (
            response.content.decode()
        )
        assert "Location" not in response
    assert checked == []  # the passwords were never checked
    assert "_auth_user_id" not in client.session
