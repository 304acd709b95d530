"""The operators' admin for webhook endpoints and deliveries."""

import pytest

from tests.receivers import Receiver
from tests.test_webhooks import make_endpoint, make_event
from webhooks import delivery
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "op@example.com", "pw-operator")
    client.force_login(user)
    return client


def test_the_delivery_page_shows_every_attempt_and_redelivers(operator, alice, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    with Receiver(503, 200) as receiver:
        make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pk)
        item = Delivery.objects.get()

        page = operator.get(f"/admin/webhooks/delivery/{pk}/change/").content.decode()
        assert item.message_id in page and "answer 503" in page

        response = operator.post(
            "/admin/webhooks/delivery/",
            {"action": "redeliver", "_selected_action": [pk]},
        )
        assert response.status_code == 302
        delivery.attempt(pk)
    assert Delivery.objects.get().status == "succeeded"
    assert operator.get("/admin/webhooks/delivery/").status_code == 200


def test_an_operator_disables_an_endpoint_and_the_ssrf_guard_applies_to_its_url(
    operator, alice, settings
):
    endpoint = make_endpoint(alice.organization, "https://hooks.example.com/in")
    url = f"/admin/webhooks/endpoint/{endpoint.pk}/change/"
    assert endpoint.secret not in operator.get(url).content.decode()
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    refused = operator.post(
        url, {"url": "http://10.0.0.1/in", "event_types": '["email.*"]', "enabled": "on"}
    )
    assert refused.status_code == 200
    assert "which is not a public address" in refused.content.decode()

    response = operator.post(
        url,
        {
            "url": "https://1.1.1.1/in",
            "event_types": '["email.*"]',
            "disabled_reason": "Paused by support",
        },
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.enabled) == ("https://1.1.1.1/in", False)
    assert operator.get("/admin/webhooks/endpoint/add/").status_code == 403
    assert Endpoint.objects.count() == 1
