"""The dashboard's webhook pages: create (secret once), the delivery log, test, rotate,
enable/disable with the reason shown, redeliver; members look, other organizations 404."""

import pytest

from tests.receivers import Receiver
from tests.test_webhooks import make_endpoint, make_event
from webhooks import delivery
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice.user)
    return client


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob.user)
    return client


def test_owner_adds_an_endpoint_and_sees_its_secret_once(alice_client, alice):
    response = alice_client.post(
        "/dashboard/webhooks/",
        {"url": "https://hooks.example.com/in", "event_types": ["email.bounced"]},
    )

    assert response.status_code == 201
    endpoint = Endpoint.objects.get()
    assert (endpoint.organization, endpoint.event_types) == (alice.organization, ["email.bounced"])
    assert endpoint.secret in response.content.decode()
    again = alice_client.get("/dashboard/webhooks/").content.decode()
    assert "https://hooks.example.com/in" in again
    assert endpoint.secret not in again


def test_an_invalid_endpoint_form_creates_nothing(alice_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = alice_client.post(
        "/dashboard/webhooks/", {"url": "http://127.0.0.1/x", "event_types": ["email.*"]}
    )

    assert response.status_code == 400
    assert "which is not a public address" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_the_endpoint_page_shows_the_delivery_log_and_why_it_was_disabled(alice_client, alice):
    with Receiver(500) as receiver:
        endpoint = make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pk)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False,
        disabled_reason="Disabled: every attempt to deliver the last 20 events failed",
    )

    html = alice_client.get(f"/dashboard/webhooks/{endpoint.public_id}/").content.decode()

    item = Delivery.objects.get()
    assert item.message_id in html
    assert "HTTP 500" in html and "answer 500" in html
    assert "every attempt to deliver the last 20 events failed" in html
    assert 'id="enable"' in html


def test_send_a_test_event_rotate_and_redeliver(alice_client, alice, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    with Receiver(500, 200) as receiver:
        endpoint = make_endpoint(alice.organization, receiver.url)
        base = f"/dashboard/webhooks/{endpoint.public_id}"

        assert alice_client.post(f"{base}/test").status_code == 302
        test = Delivery.objects.get(event_type="webhook.test")
        delivery.attempt(test.pk)
        assert Delivery.objects.get(pk=test.pk).status == "failed"

        response = alice_client.post(f"{base}/deliveries/{test.public_id}/redeliver")
        assert response.status_code == 302
        delivery.attempt(test.pk)
        assert Delivery.objects.get(pk=test.pk).status == "succeeded"

        old = endpoint.secret
        rotated = alice_client.post(f"{base}/rotate")
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert endpoint.secret in rotated.content.decode()
    assert endpoint.secret not in alice_client.get(f"{base}/").content.decode()


def test_a_delivery_not_yet_attempted_says_so_in_the_log(alice_client, alice, settings):
    settings.WEBHOOK_LOG_DAYS = 7
    endpoint = make_endpoint(alice.organization, "https://hooks.example.com/in")
    delivery.send_test(endpoint)

    html = alice_client.get(f"/dashboard/webhooks/{endpoint.public_id}/").content.decode()

    # The retention the log is purged with (WEBHOOK_LOG_DAYS), not a fixed figure.
    assert "The latest delivery; attempts are kept 7 days." in html
    assert '<span class="hint">none yet</span>' in html
    assert '<ol class="attempts">' not in html


def test_members_see_endpoints_but_cannot_change_them(bob_client, alice):
    endpoint = make_endpoint(alice.organization, "https://hooks.example.com/in")
    base = f"/dashboard/webhooks/{endpoint.public_id}"

    page = bob_client.get(f"{base}/").content.decode()
    assert "https://hooks.example.com/in" in page and 'id="rotate"' not in page
    for action in ("test", "rotate", "disable", "delete"):
        assert bob_client.post(f"{base}/{action}").status_code == 403
    assert bob_client.post("/dashboard/webhooks/", {"url": "https://x.example"}).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.enabled and not Delivery.objects.exists()


def test_another_organizations_endpoint_is_a_404(alice_client, charlie):
    endpoint = make_endpoint(charlie.organization, "https://hooks.example.com/in")
    base = f"/dashboard/webhooks/{endpoint.public_id}"

    assert alice_client.get(f"{base}/").status_code == 404
    assert alice_client.post(f"{base}/disable").status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.enabled
