"""GET/POST /api/v1/webhook-endpoints, GET/PATCH/DELETE /api/v1/webhook-endpoints/{id} and
POST /api/v1/webhook-endpoints/{id}/test (SPEC.md section 11)."""

import pytest
from django.utils import timezone

from tests.problems import problem
from webhooks import delivery
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db

LIST = "/api/v1/webhook-endpoints"
URL = "https://hooks.example.com/fluxomail"


@pytest.fixture
def hooks_key(alice, make_key):
    return make_key(alice.organization, scopes=["webhooks_manage"], name="alice hooks")


def create(api, key, **body):
    return api.post(LIST, {"url": URL, **body}, format="json", **key.bearer)


def detail(endpoint_id: str) -> str:
    return f"{LIST}/{endpoint_id}"


def test_creating_an_endpoint_answers_201_with_its_secret_once(api, hooks_key, alice):
    response = create(api, hooks_key, eventTypes=["email.bounced", "email.complained"])

    assert response.status_code == 201
    body = response.json()
    endpoint = Endpoint.objects.get()
    assert body == {
        "id": endpoint.public_id,
        "url": URL,
        "eventTypes": ["email.bounced", "email.complained"],
        "enabled": True,
        "disabledReason": None,
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
        "secret": endpoint.secret,
    }
    assert body["id"].startswith("whep_")
    assert body["secret"].startswith("whsec_")
    assert endpoint.organization == alice.organization
    # Never again: not in the list, not in the detail.
    listed = api.get(LIST, **hooks_key.bearer).json()
    assert listed == {"data": [{k: v for k, v in body.items() if k != "secret"}]}
    assert "secret" not in api.get(detail(body["id"]), **hooks_key.bearer).json()


def test_event_types_default_to_every_type(api, hooks_key):
    assert create(api, hooks_key).json()["eventTypes"] == ["email.*"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "http://["}, "url"),
        ({"url": "https://example.com:99999/x"}, "url"),
        ({"url": "https://exa mple.com/x"}, "url"),
        ({"url": "https://example.com/\x00"}, "url"),
        ({"url": 5}, "url"),
        ({"url": URL, "eventTypes": ["email.sent", "sms.sent"]}, "eventTypes[1]"),
        ({"url": URL, "eventTypes": []}, "eventTypes"),
        ({"url": URL, "enabled": "maybe"}, "enabled"),
        ({"url": URL, "secret": "whsec_mine"}, "secret"),
        ({}, "url"),
    ],
)
def test_an_invalid_endpoint_is_a_400_naming_the_field(api, hooks_key, body, field):
    response = api.post(LIST, body, format="json", **hooks_key.bearer)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["details"]) == [field]
    assert not Endpoint.objects.exists()


def test_an_organization_has_at_most_the_configured_number_of_endpoints(api, hooks_key, settings):
    settings.WEBHOOK_MAX_ENDPOINTS = 2
    assert create(api, hooks_key).status_code == 201
    assert create(api, hooks_key).status_code == 201

    response = create(api, hooks_key)

    assert response.status_code == 400
    assert response.json()["details"] == {
        "url": ["Delete an endpoint first: at most 2 are allowed."]
    }


def test_patch_changes_url_types_and_enabled(api, hooks_key):
    endpoint_id = create(api, hooks_key).json()["id"]

    response = api.patch(
        detail(endpoint_id),
        {"url": "https://other.example.com/h", "eventTypes": ["email.opened"], "enabled": False},
        format="json",
        **hooks_key.bearer,
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["url"], body["eventTypes"], body["enabled"]) == (
        "https://other.example.com/h",
        ["email.opened"],
        False,
    )
    assert "secret" not in body


def test_rotating_the_secret_answers_the_new_one_and_keeps_the_old_one_signing(api, hooks_key):
    created = create(api, hooks_key).json()

    response = api.patch(
        detail(created["id"]), {"rotateSecret": True}, format="json", **hooks_key.bearer
    )

    assert response.status_code == 200
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != created["secret"]
    endpoint = Endpoint.objects.get()
    assert endpoint.signing_secrets() == [new, created["secret"]]
    assert endpoint.previous_secret_expires_at > timezone.now()


def test_enabling_a_disabled_endpoint_clears_its_reason_and_count(api, hooks_key):
    endpoint_id = create(api, hooks_key).json()["id"]
    Endpoint.objects.update(enabled=False, disabled_reason="Disabled on …", consecutive_failures=20)

    body = api.patch(
        detail(endpoint_id), {"enabled": True}, format="json", **hooks_key.bearer
    ).json()

    assert (body["enabled"], body["disabledReason"]) == (True, None)
    assert Endpoint.objects.get().consecutive_failures == 0


def test_a_disabled_endpoint_shows_why(api, hooks_key):
    endpoint_id = create(api, hooks_key).json()["id"]
    Endpoint.objects.update(enabled=False, disabled_reason="every attempt failed")

    body = api.get(detail(endpoint_id), **hooks_key.bearer).json()

    assert (body["enabled"], body["disabledReason"]) == (False, "every attempt failed")


def test_delete_answers_204_and_removes_the_endpoint(api, hooks_key):
    endpoint_id = create(api, hooks_key).json()["id"]

    response = api.delete(detail(endpoint_id), **hooks_key.bearer)

    assert response.status_code == 204
    assert not Endpoint.objects.exists()
    assert api.get(detail(endpoint_id), **hooks_key.bearer).status_code == 404


def test_test_answers_202_with_a_pending_test_delivery(api, hooks_key):
    endpoint_id = create(api, hooks_key).json()["id"]

    response = api.post(f"{detail(endpoint_id)}/test", **hooks_key.bearer)

    assert response.status_code == 202
    item = Delivery.objects.get()
    assert response.json() == {
        "delivery": {
            "id": item.public_id,
            "eventId": item.message_id,
            "eventType": "webhook.test",
            "status": "pending",
            "attempts": 0,
            "nextAttemptAt": response.json()["delivery"]["nextAttemptAt"],
            "createdAt": response.json()["delivery"]["createdAt"],
        }
    }
    assert item.max_attempts == 1
    assert item.event_type == delivery.TEST_EVENT_TYPE


@pytest.mark.parametrize(
    "method, suffix",
    [("get", ""), ("patch", ""), ("delete", ""), ("post", "/test")],
)
def test_another_organizations_endpoint_is_a_404(api, hooks_key, charlie_key, method, suffix):
    endpoint_id = create(api, charlie_key).json()["id"]

    response = getattr(api, method)(
        detail(endpoint_id) + suffix, {}, format="json", HTTP_X_REQUEST_ID="req-w4",
        **hooks_key.bearer,
    )  # fmt: skip

    assert response.status_code == 404
    assert response.json() == problem(404, "not_found", "Not found", "req-w4")
    assert Endpoint.objects.count() == 1
    assert not Delivery.objects.exists()


def test_an_unknown_or_malformed_id_is_a_404(api, hooks_key):
    for endpoint_id in ("whep_01m8wj74411sw71cy6f7cgqbcm", "nope", "whep_' OR 1=1 --"):
        assert api.get(detail(endpoint_id), **hooks_key.bearer).status_code == 404


def test_the_list_shows_only_the_callers_endpoints(api, hooks_key, charlie_key):
    create(api, charlie_key)
    mine = create(api, hooks_key).json()["id"]

    listed = api.get(LIST, **hooks_key.bearer).json()["data"]

    assert [item["id"] for item in listed] == [mine]


def test_endpoints_need_a_key_and_the_webhooks_manage_scope(api, send_key):
    unauthenticated = api.get(LIST, HTTP_X_REQUEST_ID="req-w1")
    forbidden = api.post(LIST, {"url": URL}, format="json", HTTP_X_REQUEST_ID="req-w2",
                         **send_key.bearer)  # fmt: skip

    assert unauthenticated.status_code == 401
    assert unauthenticated["WWW-Authenticate"] == "Bearer"
    assert unauthenticated.json() == problem(401, "invalid_key", "Invalid API key", "req-w1")
    assert forbidden.status_code == 403
    assert forbidden.json() == problem(
        403, "missing_scope", "Forbidden: missing scope webhooks_manage", "req-w2"
    )
    assert not Endpoint.objects.exists()
