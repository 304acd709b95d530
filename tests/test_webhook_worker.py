"""Outbound webhooks run by a real Celery worker (and beat) on PostgreSQL, through the
configured broker (RabbitMQ in CI), to real receivers on 127.0.0.1."""

import pytest

from fluxomail import jobs
from tests.conftest import free_port
from tests.receivers import Receiver
from tests.test_webhooks import make_endpoint, make_event, verify_like_the_sdk
from tests.workers import Worker, wait_for
from webhooks.models import Attempt, Delivery, Endpoint

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FAST = {
    "JOBS_SWEEP_SECONDS": "0.3",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "WEBHOOK_FANOUT_LAG_SECONDS": "0.5",
}


def test_an_event_reaches_a_receiver_that_fails_twice_on_the_third_attempt(alice):
    with Receiver(500, 500, 200) as receiver, Worker(beat=True, env=FAST):
        endpoint = make_endpoint(alice.organization, receiver.url)
        event = make_event(alice.organization)  # committed: the fan-out is published

        wait_for(lambda: Delivery.objects.filter(status="succeeded").exists(), what="the delivery")
    item = Delivery.objects.get()
    assert (item.event_id, item.attempts) == (event.pk, 3)
    assert list(item.log.values_list("status_code", flat=True)) == [500, 500, 200]
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        assert request.headers["webhook-id"] == event.public_id
        assert verify_like_the_sdk(endpoint.secret, request.body, request.headers)["id"] == (
            event.public_id
        )


def test_an_endpoint_down_for_the_whole_window_is_disabled_with_every_attempt_logged(alice):
    env = {**FAST, "WEBHOOK_MAX_ATTEMPTS": "3", "WEBHOOK_DISABLE_AFTER": "2"}
    endpoint = make_endpoint(alice.organization, f"http://127.0.0.1:{free_port()}/down")
    with Worker(beat=True, env=env):
        make_event(alice.organization)
        make_event(alice.organization)
        wait_for(
            lambda: not Endpoint.objects.get(pk=endpoint.pk).enabled, what="the endpoint disabled"
        )
    endpoint.refresh_from_db()
    assert "every attempt to deliver the last 2 events failed" in endpoint.disabled_reason
    assert sorted(Delivery.objects.values_list("status", "attempts")) == [
        ("failed", 3),
        ("failed", 3),
    ]
    attempts = Attempt.objects.order_by("delivery_id", "number")
    assert [(a.number, a.error) for a in attempts] == [
        (n, "Connection failed: Connection refused") for n in (1, 2, 3, 1, 2, 3)
    ]


def test_an_event_recorded_while_the_broker_is_down_is_delivered_by_the_sweeper(alice, monkeypatch):
    with Receiver(200) as receiver:
        make_endpoint(alice.organization, receiver.url)
        # The publish after commit fails (the broker is unreachable from this process).
        monkeypatch.setattr(jobs, "_skip_until", float("inf"))
        event = make_event(alice.organization)
        monkeypatch.setattr(jobs, "_skip_until", 0.0)
        assert not Delivery.objects.exists()

        with Worker(beat=True, env=FAST):
            wait_for(
                lambda: Delivery.objects.filter(status="succeeded").exists(),
                what="the sweeper's delivery",
            )
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["webhook-id"] == event.public_id
