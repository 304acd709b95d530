"""The SSRF guard of outbound webhooks: in production (WEBHOOK_ALLOW_PRIVATE_TARGETS off) an
endpoint may not resolve to a loopback, private, link-local or metadata address, at creation
and again at every attempt, after DNS resolution; redirects are never followed."""

import pytest

from tests.receivers import Receiver
from tests.test_webhooks import make_endpoint, make_event
from webhooks import delivery, targets
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db

REFUSED = [
    "http://127.0.0.1/hooks",
    "http://127.1.2.3:8080/hooks",
    "http://[::1]/hooks",
    "http://[::ffff:127.0.0.1]/hooks",
    "http://0.0.0.0/hooks",
    "http://10.0.0.5/hooks",
    "http://172.16.3.4/hooks",
    "http://192.168.1.10/hooks",
    "http://[fd00::1]/hooks",
    "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "http://[fe80::1]/hooks",
    "http://100.100.100.200/hooks",  # carrier-grade NAT range (a metadata address too)
    "http://2130706433/hooks",  # 127.0.0.1 written as one number
    "http://localhost:8000/hooks",  # a name that resolves to loopback
]


@pytest.fixture
def guard_on(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False


@pytest.mark.parametrize("url", REFUSED)
def test_the_api_refuses_an_endpoint_resolving_to_a_non_public_address(
    api, alice, make_key, guard_on, url
):
    key = make_key(alice.organization, scopes=["webhooks_manage"])

    response = api.post("/api/v1/webhook-endpoints", {"url": url}, format="json", **key.bearer)

    assert response.status_code == 400
    (message,) = response.json()["details"]["url"]
    assert "which is not a public address" in message
    assert not Endpoint.objects.exists()


def test_a_host_that_does_not_resolve_is_refused(guard_on):
    with pytest.raises(targets.UnsafeTarget, match="does not resolve"):
        targets.resolve("https://no-such-host.invalid/hooks")


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"]
)
def test_public_addresses_are_allowed(address):
    assert targets.allowed_address(address)


def test_every_attempt_checks_the_address_again(alice, settings):
    with Receiver(200) as receiver:
        # Created while private targets were allowed, then the guard went on.
        make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

        log = delivery.attempt(pk)

    assert receiver.requests == []
    assert log.status_code is None
    assert log.error == (
        "Refused: The host 127.0.0.1 resolves to 127.0.0.1, which is not a public address "
        "(loopback, private, link-local and metadata addresses are refused)."
    )
    assert Delivery.objects.get(pk=pk).status == "pending"  # retried: it may be fixed


def test_a_redirect_to_a_private_address_is_not_followed(alice):
    with (
        Receiver(200) as internal,
        Receiver(307, headers={"Location": "http://169.254.169.254/latest/meta-data/"}) as public,
    ):
        make_endpoint(alice.organization, public.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        public.answer_headers["Location"] = internal.url
        log = delivery.attempt(pk)

    assert log.status_code == 307
    assert len(public.requests) == 1
    assert internal.requests == []
