"""Short-lived tokens: POST /api/v1/tokens, and a token's use (SPEC.md section 8)."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import signing

from accounts.models import Scope
from tests.conftest import SEED_BODY
from tests.problems import problem

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens"
EVENTS = "/api/v1/events"
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def mint(api, key, body=None, **extra):
    return api.post(TOKENS, body if body is not None else {}, format="json", **key.bearer, **extra)


def token_of(api, key, **body) -> str:
    response = mint(api, key, body)
    assert response.status_code == 200, response.json()
    return response.json()["token"]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def assert_problem(response, status: int, code: str, message: str, details=None) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == problem(status, code, message, response["X-Request-Id"], details)


def assert_invalid(response) -> None:
    assert_problem(response, 401, "invalid_key", "Invalid API key")
    assert response["WWW-Authenticate"] == "Bearer"


# Minting -------------------------------------------------------------------------------------


def test_key_mints_a_token_with_its_scopes_for_300_seconds_by_default(api, alice_key):
    with time_machine.travel(T0, tick=False):
        response = mint(api, alice_key)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    assert body["expiresAt"] == "2026-05-04T12:05:00.000Z"
    assert body["token"].startswith("flxt_")
    assert response["Cache-Control"] == "no-store"


def test_token_carries_the_keys_public_id_scopes_and_expiry_and_nothing_secret(api, alice_key):
    with time_machine.travel(T0, tick=False):
        token = token_of(api, alice_key, ttlSeconds=60, scopes=["read_sends"])
    value, _, signature = token.removeprefix("flxt_").rpartition(".")
    payload = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    assert payload == {
        "k": alice_key.key.public_id,
        "s": ["read_sends"],
        "x": int((T0 + timedelta(seconds=60)).timestamp() * 1000),
    }
    assert alice_key.token.rsplit("_", 1)[1] not in token
    assert signature


@pytest.mark.parametrize("ttl", [1, 3600])
def test_ttl_may_be_1_to_3600_seconds(api, alice_key, ttl):
    with time_machine.travel(T0, tick=False):
        response = mint(api, alice_key, {"ttlSeconds": ttl})
    assert response.status_code == 200
    expected = (T0 + timedelta(seconds=ttl)).isoformat(timespec="milliseconds")
    assert response.json()["expiresAt"] == expected.replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"ttlSeconds": 0}, {"ttlSeconds": ["Ensure this value is greater than or equal to 1."]}),
        (
            {"ttlSeconds": 3601},
            {"ttlSeconds": ["Ensure this value is less than or equal to 3600."]},
        ),
        ({"ttlSeconds": "soon"}, {"ttlSeconds": ["A valid integer is required."]}),
        ({"scopes": []}, {"scopes": ["This list may not be empty."]}),
        ({"scopes": ["admin"]}, {"scopes[0]": ['"admin" is not a valid choice.']}),
        ({"scopes": "read_sends"}, {"scopes": ['Expected a list of items but got type "str".']}),
        ({"ttl": 60}, {"ttl": ["Unknown field."]}),
    ],
)
def test_invalid_request_is_400_naming_the_field(api, alice_key, body, details):
    response = mint(api, alice_key, body)
    ((field, reasons),) = details.items()
    message = f"{field}: {reasons[0]}"
    assert_problem(response, 400, "validation_error", message, details)


def test_scopes_must_be_a_subset_of_the_keys(api, read_key):
    response = mint(api, read_key, {"scopes": ["read_sends", "send_email"]})
    assert_problem(response, 403, "missing_scope", "Forbidden: missing scope send_email")


def test_a_subset_of_the_keys_scopes_is_granted(api, alice_key):
    token = token_of(api, alice_key, scopes=["preferences_read"])
    # The token has preferences_read only, not the key's read_sends.
    response = api.get(EVENTS, **bearer(token))
    assert_problem(response, 403, "missing_scope", "Forbidden: missing scope read_sends")


def test_minting_needs_a_key(api, alice):
    assert_invalid(api.post(TOKENS, {}, format="json"))


def test_a_token_cannot_mint_tokens(api, alice_key):
    token = token_of(api, alice_key)
    assert_invalid(api.post(TOKENS, {}, format="json", **bearer(token)))


def test_a_paused_organization_mints_nothing(api, alice_key):
    alice_key.key.organization.pause()
    response = mint(api, alice_key)
    assert_problem(response, 403, "tenant_paused", "Tenant paused for this organization")


# Using a token -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY"])
def test_token_reads_where_its_scopes_allow_in_either_header(api, read_key, header):
    token = token_of(api, read_key)
    value = f"Bearer {token}" if header == "HTTP_AUTHORIZATION" else token
    response = api.get(EVENTS, **{header: value})
    assert response.status_code == 200
    assert response.json() == {"events": [], "nextCursor": None}


def test_token_is_refused_on_post_even_with_the_scope(api, alice_key, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    token = token_of(api, alice_key, scopes=["send_email"])
    response = api.post("/api/v1/emails/send", SEED_BODY, format="json", **bearer(token))
    assert_invalid(response)
    # The key itself may send.
    response = api.post("/api/v1/emails/send", SEED_BODY, format="json", **alice_key.bearer)
    assert response.status_code == 200


def test_token_expires_on_time(api, read_key):
    with time_machine.travel(T0, tick=False):
        token = token_of(api, read_key, ttlSeconds=60)
    with time_machine.travel(T0 + timedelta(seconds=59, milliseconds=999), tick=False):
        assert api.get(EVENTS, **bearer(token)).status_code == 200
    with time_machine.travel(T0 + timedelta(seconds=60), tick=False):
        assert_invalid(api.get(EVENTS, **bearer(token)))


def test_revoking_the_key_revokes_its_tokens(api, read_key):
    token = token_of(api, read_key)
    read_key.key.revoke()
    assert_invalid(api.get(EVENTS, **bearer(token)))


def test_a_token_outlives_neither_its_keys_expiry(api, alice, make_key):
    with time_machine.travel(T0, tick=False):
        key = make_key(
            alice.organization, scopes=[Scope.READ_SENDS], expires_at=T0 + timedelta(seconds=30)
        )
        token = token_of(api, key, ttlSeconds=3600)
    with time_machine.travel(T0 + timedelta(seconds=31), tick=False):
        assert_invalid(api.get(EVENTS, **bearer(token)))


def test_a_token_loses_a_scope_its_key_loses(api, read_key):
    token = token_of(api, read_key)
    read_key.key.scopes = [Scope.SEND_EMAIL]
    read_key.key.save()
    response = api.get(EVENTS, **bearer(token))
    assert_problem(response, 403, "missing_scope", "Forbidden: missing scope read_sends")


def test_a_paused_organizations_token_is_403(api, read_key):
    token = token_of(api, read_key)
    read_key.key.organization.pause()
    response = api.get(EVENTS, **bearer(token))
    assert_problem(response, 403, "tenant_paused", "Tenant paused for this organization")


def test_a_token_reads_only_its_own_organization(api, read_key, charlie_key):
    token = token_of(api, charlie_key)
    client = api.get("/api/v1/sends", **bearer(token))
    assert client.status_code == 200
    assert client.json()["data"] == []


@pytest.mark.parametrize("mangle", ["payload", "signature", "salt", "prefix"])
def test_a_forged_or_altered_token_is_401(api, read_key, mangle):
    token = token_of(api, read_key)
    value, _, signature = token.removeprefix("flxt_").rpartition(".")
    if mangle == "payload":
        payload = {"k": read_key.key.public_id, "s": ["read_sends"], "x": 4102444800000}
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        token = f"flxt_{forged}.{signature}"
    elif mangle == "signature":
        token = f"flxt_{value}.{signature[:-2]}{'BB' if signature.endswith('AA') else 'AA'}"
    elif mangle == "salt":
        signer = signing.Signer(salt="another.salt", sep=".", algorithm="sha256")
        token = "flxt_" + signer.sign_object({"k": read_key.key.public_id, "s": ["read_sends"]})
    else:
        token = token.removeprefix("flxt_")
    assert_invalid(api.get(EVENTS, **bearer(token)))


def test_the_token_query_parameter_is_ignored_outside_the_stream(api, read_key):
    token = token_of(api, read_key)
    assert_invalid(api.get(EVENTS, {"token": token}))
    assert_invalid(api.get(EVENTS, {"token": read_key.token}))
