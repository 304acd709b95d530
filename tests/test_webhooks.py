"""Outbound webhooks in one process: fan-out, signed attempts to a real receiver on 127.0.0.1,
retries with backoff, the attempt log, disabling, redelivery, secret rotation and the purges.
(A real worker runs them in tests/test_webhook_worker.py.)"""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from fluxomail import jobs
from sends import events
from sends.models import Event, Send
from tests.conftest import free_port
from tests.receivers import Receiver
from webhooks import delivery
from webhooks.models import Attempt, Delivery, Endpoint, FanoutCursor

pytestmark = pytest.mark.django_db


def verify_like_the_sdk(secret: str, body: bytes, headers: dict) -> dict:
    """What the official SDK's webhooks.verifyAndParse does: hex HMAC-SHA256 of the raw body."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["Fluxomail-Signature"], expected)
    return json.loads(body)


def verify_like_standard_webhooks(secret: str, body: bytes, headers: dict) -> dict:
    return Webhook(secret).verify(body, headers)


def make_send(organization, **fields) -> Send:
    return Send.objects.create(
        organization=organization,
        endpoint="send",
        to="Reader <reader@example.com>",
        subject="Your receipt",
        metadata={"orderId": "42"},
        status="sent",
        **fields,
    )


def make_event(organization, type=Event.Type.DELIVERED) -> Event:
    return events.record(send=make_send(organization), type=type, data={"response": "250 OK"})


def make_endpoint(organization, url, **fields) -> Endpoint:
    endpoint = Endpoint(organization=organization, url=url, **fields)
    endpoint.event_types = fields.get("event_types", ["email.*"])
    endpoint.save()
    return endpoint


def run_until_done(pk: int, time_machine, limit: int = 20) -> list[Attempt]:
    """Attempts the delivery whenever it is due, moving the clock to its next attempt."""
    for _ in range(limit):
        item = Delivery.objects.get(pk=pk)
        if item.status != Delivery.Status.PENDING:
            break
        time_machine.move_to(item.next_attempt_at + timedelta(milliseconds=1), tick=False)
        delivery.attempt(pk)
    return list(Attempt.objects.filter(delivery_id=pk).order_by("number"))


def test_a_receiver_failing_twice_gets_the_event_signed_on_the_third_attempt(alice, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    with Receiver(500, 500, 200) as receiver:
        endpoint = make_endpoint(alice.organization, receiver.url)
        event = make_event(alice.organization)
        (pk,) = delivery.fan_out(event)

        attempts = run_until_done(pk, time_machine)

        assert [a.status_code for a in attempts] == [500, 500, 200]
        assert [a.response_body for a in attempts] == ["answer 500", "answer 500", "answer 200"]
        assert Delivery.objects.get(pk=pk).status == "succeeded"
        assert len(receiver.requests) == 3
        expected = {
            "id": event.public_id,
            "type": "email.delivered",
            "created": events.iso(event.occurred_at),
            "data": {
                "sendId": event.send.public_id,
                "providerMessageId": None,
                "to": "reader@example.com",
                "subject": "Your receipt",
                "metadata": {"orderId": "42"},
                "response": "250 OK",
            },
        }
        for request in receiver.requests:
            # Verified as the receiver did, when it arrived (the timestamp is checked too).
            sent_at = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
            time_machine.move_to(sent_at, tick=False)
            assert request.path == "/hooks?source=fluxomail"
            assert request.headers["Content-Type"] == "application/json"
            assert request.headers["webhook-id"] == event.public_id
            assert verify_like_the_sdk(endpoint.secret, request.body, request.headers) == expected
            assert (
                verify_like_standard_webhooks(endpoint.secret, request.body, request.headers)
                == expected
            )
        # The same bytes every time: the envelope id is the receiver's deduplication key.
        assert len({request.body for request in receiver.requests}) == 1


def test_retries_wait_longer_each_time_and_not_before_they_are_due(alice, time_machine, settings):
    time_machine.move_to(timezone.now(), tick=False)
    with Receiver(503) as receiver:
        make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pk)
        first = Delivery.objects.get(pk=pk)
        wait = first.next_attempt_at - timezone.now()
        assert timedelta(seconds=72) <= wait <= timedelta(seconds=108)  # 90 s ± 20%

        assert delivery.attempt(pk) is None  # not due yet: nothing is sent
        assert len(receiver.requests) == 1

        attempts = run_until_done(pk, time_machine)
    assert len(attempts) == 5
    gaps = [b.created_at - a.created_at for a, b in zip(attempts, attempts[1:], strict=False)]
    for gap, base in zip(gaps, [90, 270, 810, 2430], strict=True):
        assert timedelta(seconds=base * 0.8) <= gap <= timedelta(seconds=base * 1.2)
    assert sum(gaps, timedelta()) < timedelta(minutes=80)
    assert Delivery.objects.get(pk=pk).status == "failed"


def test_an_endpoint_down_for_the_whole_window_ends_disabled_with_every_attempt_logged(
    alice, time_machine, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_DISABLE_AFTER = 2
    time_machine.move_to(timezone.now(), tick=False)
    down = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    endpoint = make_endpoint(alice.organization, down)

    for _ in range(2):
        (pk,) = delivery.fan_out(make_event(alice.organization))
        attempts = run_until_done(pk, time_machine)
        assert [(a.number, a.status_code, a.error) for a in attempts] == [
            (1, None, "Connection failed: Connection refused"),
            (2, None, "Connection failed: Connection refused"),
            (3, None, "Connection failed: Connection refused"),
        ]

    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    assert endpoint.consecutive_failures == 2
    assert endpoint.disabled_reason.endswith(
        "every attempt to deliver the last 2 events failed "
        "(last answer: Connection failed: Connection refused)."
    )
    assert Attempt.objects.filter(delivery__endpoint=endpoint).count() == 6
    # A disabled endpoint gets no new deliveries.
    assert delivery.fan_out(make_event(alice.organization)) == []


def test_a_success_resets_the_count_of_failed_events(alice, time_machine, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_DISABLE_AFTER = 2
    with Receiver(500, 200, 500) as receiver:
        endpoint = make_endpoint(alice.organization, receiver.url)
        for _ in range(3):
            (pk,) = delivery.fan_out(make_event(alice.organization))
            delivery.attempt(pk)
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.consecutive_failures) == (True, 1)


def test_redirects_are_not_followed(alice):
    with Receiver(200) as target, Receiver(302, headers={"Location": target.url}) as redirecting:
        make_endpoint(alice.organization, redirecting.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        log = delivery.attempt(pk)
    assert log.status_code == 302
    assert target.requests == []
    assert Delivery.objects.get(pk=pk).status == "pending"  # a failed attempt: retried later


def test_events_are_handed_to_the_fan_out_only_for_organizations_with_an_endpoint(
    alice, charlie, monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    original = jobs.publish

    def publish(task, *args):
        published.append((task.name, args))
        return original(task, *args)

    monkeypatch.setattr(jobs, "publish", publish)

    def committed_event(organization) -> Event:
        with django_capture_on_commit_callbacks(execute=True):
            return make_event(organization)

    committed_event(alice.organization)  # no endpoint yet: no task
    make_endpoint(charlie.organization, "https://hooks.example.com/c", enabled=False)
    committed_event(charlie.organization)  # a disabled endpoint only: no task
    # An endpoint saved in this process is known to the very next event.
    make_endpoint(alice.organization, "https://hooks.example.com/a")
    event = committed_event(alice.organization)

    assert published == [("webhooks.fan_out", (event.pk,))]


def test_fan_out_follows_the_type_filter_and_runs_once_per_endpoint(alice, charlie):
    with Receiver(200) as receiver:
        bounces = make_endpoint(alice.organization, receiver.url, event_types=["email.bounced"])
        everything = make_endpoint(alice.organization, receiver.url)
        make_endpoint(charlie.organization, receiver.url)  # another organization's
        make_endpoint(alice.organization, receiver.url, enabled=False)
        bounced = make_event(alice.organization, Event.Type.BOUNCED)
        delivered = make_event(alice.organization, Event.Type.DELIVERED)

        delivery.fan_out(bounced)
        delivery.fan_out(bounced)  # a task delivered twice by the broker
        delivery.fan_out(delivered)

    rows = sorted(Delivery.objects.values_list("event__type", "endpoint_id"))
    assert rows == sorted(
        [
            ("email.bounced", bounces.pk),
            ("email.bounced", everything.pk),
            ("email.delivered", everything.pk),
        ]
    )


def test_an_attempt_claimed_by_one_worker_is_not_made_by_another(alice):
    with Receiver(200) as receiver:
        make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        # Another worker holds the claim (it is mid-attempt).
        Delivery.objects.filter(pk=pk).update(locked_until=timezone.now() + timedelta(minutes=1))
        assert delivery.attempt(pk) is None
        assert receiver.requests == []


def test_a_killed_workers_claim_runs_out_and_the_attempt_is_made_again(alice, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    with Receiver(200) as receiver:
        make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        # A worker claimed it and died before it could write anything.
        Delivery.objects.filter(pk=pk).update(
            locked_until=timezone.now() + timedelta(seconds=delivery.CLAIM_SECONDS), attempts=1
        )
        time_machine.move_to(timezone.now() + timedelta(seconds=delivery.CLAIM_SECONDS + 1))
        assert delivery.sweep() == 1
        log = delivery.attempt(pk)
    assert (log.number, log.status_code) == (2, 200)
    assert len(receiver.requests) == 1


def test_redelivery_by_hand_gives_a_failed_delivery_new_attempts(alice, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    with Receiver(500, 200) as receiver:
        make_endpoint(alice.organization, receiver.url)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pk)
        item = Delivery.objects.get(pk=pk)
        assert item.status == "failed"

        delivery.redeliver(item)
        log = delivery.attempt(pk)
    assert (log.number, log.status_code) == (2, 200)
    assert Delivery.objects.get(pk=pk).status == "succeeded"
    assert receiver.requests[0].body == receiver.requests[1].body


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(alice, time_machine):
    from webhooks.api import rotate_secret

    time_machine.move_to(timezone.now(), tick=False)
    with Receiver(200) as receiver:
        endpoint = make_endpoint(alice.organization, receiver.url)
        old = endpoint.secret
        rotate_secret(endpoint)
        endpoint.save()
        new = endpoint.secret
        (pk,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pk)
        request = receiver.requests[0]
        assert request.headers["webhook-signature"].count("v1,") == 2
        verify_like_standard_webhooks(old, request.body, request.headers)
        verify_like_standard_webhooks(new, request.body, request.headers)
        verify_like_the_sdk(new, request.body, request.headers)  # the newest

        time_machine.move_to(timezone.now() + timedelta(hours=24, seconds=1), tick=False)
        (pk,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pk)
        later = receiver.requests[1]
    assert later.headers["webhook-signature"].count("v1,") == 1
    verify_like_standard_webhooks(new, later.body, later.headers)
    with pytest.raises(Exception, match="No matching signature"):
        verify_like_standard_webhooks(old, later.body, later.headers)


def test_the_sweeper_fans_out_events_that_no_task_announced(alice, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    with Receiver(200) as receiver:
        make_endpoint(alice.organization, receiver.url)
        event = make_event(alice.organization)  # its fan-out message was lost

        delivery.sweep()
        assert not Delivery.objects.exists()  # too fresh: its own task may still be on the way
        time_machine.move_to(timezone.now() + timedelta(minutes=2), tick=False)
        assert delivery.sweep() == 1  # fanned out, and the delivery published
        assert FanoutCursor.objects.get().position > event.public_id
        delivery.sweep()
        assert Delivery.objects.count() == 1  # once

        (item,) = Delivery.objects.all()
        assert item.event_id == event.pk
        delivery.attempt(item.pk)
    assert len(receiver.requests) == 1


def test_the_sweeper_leaves_events_before_the_endpoint_existed_alone(alice, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    make_event(alice.organization)
    time_machine.move_to(timezone.now() + timedelta(seconds=1), tick=False)
    make_endpoint(alice.organization, "http://127.0.0.1:9/hooks")
    time_machine.move_to(timezone.now() + timedelta(minutes=2), tick=False)
    delivery.sweep()
    assert not Delivery.objects.exists()


def test_the_purge_drops_the_log_after_30_days_but_keeps_pending_deliveries(alice, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    with Receiver(200, 500) as receiver:
        make_endpoint(alice.organization, receiver.url)
        (done,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(done)
        (pending,) = delivery.fan_out(make_event(alice.organization))
        delivery.attempt(pending)
    time_machine.move_to(timezone.now() + timedelta(days=30, seconds=1), tick=False)

    assert delivery.purge() == 3  # two attempts and the finished delivery

    assert list(Delivery.objects.values_list("pk", flat=True)) == [pending]
    assert not Attempt.objects.exists()
