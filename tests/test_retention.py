"""Retention: message bodies older than RETENTION_DAYS are blanked by a periodic job; sends,
events and counters stay, and the timeline and the dashboard say when a body went."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from sends import events
from sends.models import Event, EventCounter, Message, Send
from sends.retention import purge_bodies
from sends.tasks import purge_bodies as purge_bodies_task

pytestmark = pytest.mark.django_db


def sent(organization, age: timedelta) -> Message:
    at = timezone.now() - age
    send = Send.objects.create(
        organization=organization, endpoint="send", to="reader@example.com", subject="Receipt",
        status="sent", created_at=at, updated_at=at,
        attachments=[{"filename": "receipt.pdf", "contentType": "application/pdf", "size": 9}],
    )  # fmt: skip
    message = Message.objects.create(
        send=send, from_email="hello@acme.test", to=["reader@example.com"], provider="smtp",
        provider_message_id="<m@acme.test>", text="Your total is 42", html="<p>42</p>",
        headers={"X-Order": "42"}, created_at=at,
    )  # fmt: skip
    events.record(send=send, message=message, type=Event.Type.SENT, occurred_at=at)
    return message


def test_bodies_older_than_the_retention_are_blanked_and_the_rest_stays(alice, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    old = sent(alice.organization, timedelta(days=30, minutes=1))
    recent = sent(alice.organization, timedelta(days=29, hours=23))

    assert purge_bodies_task() == 1
    assert purge_bodies() == 0  # once

    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.text, old.html, old.headers) == ("", "", {})
    assert old.body_purged_at == timezone.now()
    assert (old.provider_message_id, old.to) == ("<m@acme.test>", ["reader@example.com"])
    assert (recent.text, recent.html, recent.headers, recent.body_purged_at) == (
        "Your total is 42",
        "<p>42</p>",
        {"X-Order": "42"},
        None,
    )
    assert Send.objects.count() == 2 and Event.objects.count() == 2
    # What was attached (never its content) is metadata, not body: it stays.
    assert old.send.attachments == [
        {"filename": "receipt.pdf", "contentType": "application/pdf", "size": 9}
    ]
    assert sum(EventCounter.objects.filter(name="sent").values_list("count", flat=True)) == 2


def test_the_retention_follows_the_setting(alice, settings):
    settings.RETENTION_DAYS = 7
    message = sent(alice.organization, timedelta(days=8))

    assert purge_bodies() == 1
    message.refresh_from_db()
    assert message.body_purged_at is not None


def test_beat_runs_the_retention_purge():
    assert django_settings.CELERY_BEAT_SCHEDULE["purge-bodies"]["task"] == "sends.purge_bodies"


def test_the_timeline_says_when_a_body_was_purged(api, alice, read_key, time_machine):
    time_machine.move_to("2026-03-02T09:00:00Z", tick=False)
    message = sent(alice.organization, timedelta(days=31))
    purge_bodies()

    body = api.get(f"/api/v1/sends/{message.send.public_id}", **read_key.bearer).json()

    assert body["messages"][0]["bodyPurgedAt"] == "2026-03-02T09:00:00.000Z"


def test_the_dashboard_says_when_a_body_was_purged_and_shows_no_preview(client, alice):
    message = sent(alice.organization, timedelta(days=31))
    purge_bodies()
    client.force_login(alice.user)

    page = client.get(f"/dashboard/sends/{message.send.public_id}/").content.decode()

    assert 'id="body-purged"' in page
    assert "30 days after sending" in page
    assert "<iframe" not in page
    assert client.get(f"/dashboard/sends/{message.send.public_id}/preview").status_code == 404
