from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiKey, key_digest

pytestmark = [pytest.mark.urls("tests.auth_urls"), pytest.mark.django_db]

SEND = "/api/v1/send-probe"
READ = "/api/v1/read-probe"


def assert_invalid_key(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "invalid_key"
    assert body["error"] == body["message"] == body["detail"] == "Invalid API key"
    assert body["status"] == 401
    assert body["details"] == {}
    assert body["requestId"] == response["X-Request-Id"]


def test_bearer_key_authenticates(api, send_key):
    response = api.post(SEND, {}, format="json", HTTP_AUTHORIZATION=f"Bearer {send_key.token}")
    assert response.status_code == 200
    assert response.json() == {"organization": "acme", "keys": []}


def test_x_api_key_header_authenticates(api, send_key):
    response = api.post(SEND, {}, format="json", HTTP_X_API_KEY=send_key.token)
    assert response.status_code == 200
    assert response.json() == {"organization": "acme", "keys": []}


def test_missing_key_is_401(api, send_key):
    assert_invalid_key(api.post(SEND, {}, format="json"))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "bearer-ish"])
def test_wrong_scheme_is_401(api, send_key, scheme):
    assert_invalid_key(
        api.post(SEND, {}, format="json", HTTP_AUTHORIZATION=f"{scheme} {send_key.token}")
    )


@pytest.mark.parametrize(
    "token",
    ["", "flx_", "not-a-key", "flx_short_secret", "flx_abcdefgh_" + "x" * 10, "sk_live_123"],
)
def test_malformed_key_is_401(api, send_key, token):
    assert_invalid_key(api.post(SEND, {}, format="json", HTTP_X_API_KEY=token))


def test_unknown_public_id_is_401(api, send_key):
    token = "flx_ZZZZZZZZ_" + send_key.token.split("_", 2)[2]
    assert_invalid_key(api.post(SEND, {}, format="json", HTTP_X_API_KEY=token))


def test_right_public_id_with_wrong_secret_is_401(api, send_key):
    prefix = send_key.token.rsplit("_", 1)[0]
    assert_invalid_key(api.post(SEND, {}, format="json", HTTP_X_API_KEY=f"{prefix}_{'A' * 40}"))


def test_revoked_key_is_401(api, send_key):
    send_key.key.revoke()
    assert_invalid_key(api.post(SEND, {}, format="json", **send_key.bearer))


def test_expired_key_is_401(api, alice, make_key):
    key = make_key(alice.organization, expires_at=timezone.now() - timedelta(seconds=1))
    assert_invalid_key(api.post(SEND, {}, format="json", **key.bearer))


def test_key_not_yet_expired_authenticates(api, alice, make_key):
    key = make_key(alice.organization, expires_at=timezone.now() + timedelta(days=1))
    assert api.post(SEND, {}, format="json", **key.bearer).status_code == 200


def test_missing_scope_is_403(api, read_key):
    response = api.post(SEND, {}, format="json", **read_key.bearer)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "missing_scope"
    assert body["message"] == "Forbidden: missing scope send_email"
    assert "WWW-Authenticate" not in response


def test_empty_scope_list_may_send(api, empty_key):
    assert api.post(SEND, {}, format="json", **empty_key.bearer).status_code == 200


def test_empty_scope_list_may_not_read_sends(api, empty_key):
    response = api.get(READ, **empty_key.bearer)
    assert response.status_code == 403
    assert response.json()["message"] == "Forbidden: missing scope read_sends"


def test_paused_organization_is_403(api, send_key):
    send_key.key.organization.pause()
    response = api.post(SEND, {}, format="json", **send_key.bearer)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "tenant_paused"
    assert body["message"] == "Tenant paused for this organization"


def test_scope_is_checked_before_pause(api, read_key):
    read_key.key.organization.pause()
    assert api.post(SEND, {}, format="json", **read_key.bearer).json()["code"] == "missing_scope"


def test_resumed_organization_authenticates_again(api, send_key):
    organization = send_key.key.organization
    organization.pause()
    organization.resume()
    assert api.post(SEND, {}, format="json", **send_key.bearer).status_code == 200


def test_only_the_digest_is_stored(send_key):
    row = ApiKey.objects.filter(pk=send_key.key.pk).values().get()
    assert row["digest"] == key_digest(send_key.token)
    assert all(send_key.token not in str(value) for value in row.values())
    secret = send_key.token.split("_", 2)[2]
    assert all(secret not in str(value) for value in row.values())


def test_key_format_is_prefix_public_id_and_secret(send_key):
    prefix, public_id, secret = send_key.token.split("_", 2)
    assert prefix == "flx"
    assert public_id == send_key.key.public_id and len(public_id) == 8
    assert len(secret) >= 32 and secret.isalnum()


def test_last_used_is_written_at_most_once_a_minute(api, send_key, django_assert_num_queries):
    with django_assert_num_queries(2):  # key lookup + last_used_at update
        api.post(SEND, {}, format="json", **send_key.bearer)
    first = ApiKey.objects.get(pk=send_key.key.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(0):  # the key from the hot cache, no write
        api.post(SEND, {}, format="json", **send_key.bearer)
    assert ApiKey.objects.get(pk=send_key.key.pk).last_used_at == first


def test_last_used_moves_on_after_a_minute(api, send_key):
    import time_machine

    with time_machine.travel(timezone.now(), tick=False) as traveller:
        api.post(SEND, {}, format="json", **send_key.bearer)
        first = ApiKey.objects.get(pk=send_key.key.pk).last_used_at
        traveller.shift(timedelta(seconds=61))
        api.post(SEND, {}, format="json", **send_key.bearer)
    assert ApiKey.objects.get(pk=send_key.key.pk).last_used_at > first
