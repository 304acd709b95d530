"""The suppression list at send time: who is held back, what the answer and the log say."""

import email
from email import policy as email_policy

import pytest

from contacts.models import Suppression, SuppressionChange
from contacts.services import suppress
from sends import events
from sends.models import Event, Message, Send
from usage.models import UsageCounter

SEND = "/api/v1/emails/send"

pytestmark = pytest.mark.django_db


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


def parsed(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email_policy.default)


def hold(organization, address, reason=Suppression.Reason.MANUAL, category=""):
    return suppress(
        organization_id=organization.pk,
        address=address,
        reason=reason,
        category=category,
        actor="test",
    )


def dropped(send_id: str) -> list[Event]:
    return list(Event.objects.filter(send__public_id=send_id, type=Event.Type.DROPPED))


def test_a_suppressed_to_answers_suppressed_and_nothing_is_delivered(
    api, send_key, seed_body, smtp_server, acme
):
    hold(acme, "user@example.com")
    response = send(api, send_key, seed_body)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "sendId": body["sendId"],
        "status": "suppressed",
        "messageId": None,
        "reused": False,
    }
    assert smtp_server.messages == []
    stored = Send.objects.get(public_id=body["sendId"])
    assert stored.status == Send.Status.SUPPRESSED
    assert not Message.objects.filter(send=stored).exists()
    (event,) = dropped(body["sendId"])
    envelope = events.envelope(event)
    assert envelope["type"] == "email.dropped"
    assert envelope["data"]["reason"] == "suppressed"
    assert envelope["data"]["suppressionReason"] == "manual"
    assert events.sentence(envelope) == (
        "Not sent: the address is on the suppression list (manual)."
    )
    assert list(Event.objects.filter(send=stored).values_list("type", flat=True)) == [
        "email.dropped"
    ]


def test_a_replay_of_a_suppressed_send_answers_the_same(api, send_key, seed_body, acme):
    hold(acme, "user@example.com")
    first = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="supp-1")
    again = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="supp-1")
    assert again.status_code == 200
    assert again["Idempotency-Replayed"] == "true"
    assert again.json() == {**first.json(), "reused": True}
    assert Send.objects.count() == 1
    assert len(dropped(first.json()["sendId"])) == 1


def test_usage_counts_a_suppressed_send_as_suppressed_not_as_sent(api, send_key, seed_body, acme):
    hold(acme, "user@example.com")
    send(api, send_key, seed_body)
    counter = UsageCounter.objects.get(api_key=send_key.key)
    assert (counter.requests, counter.sends, counter.suppressed) == (1, 0, 1)


def test_suppressed_cc_and_bcc_are_left_out_of_the_envelope_and_recorded_on_the_send(
    api, send_key, seed_body, smtp_server, acme
):
    hold(acme, "gone@example.com")
    hold(acme, "Hidden@Example.com", reason=Suppression.Reason.COMPLAINT)
    body = dict(
        seed_body,
        cc=["Gone <gone@example.com>", "kept@example.com"],
        bcc=["hidden@example.com", "secret@example.com"],
    )
    response = send(api, send_key, body)
    assert response.json()["status"] == "sent"
    (envelope,) = smtp_server.messages
    assert sorted(envelope.rcpt_tos) == [
        "kept@example.com",
        "secret@example.com",
        "user@example.com",
    ]
    assert parsed(envelope)["Cc"] == "kept@example.com"
    stored = Send.objects.get(public_id=response.json()["sendId"])
    assert stored.suppressed == ["gone@example.com", "hidden@example.com"]
    assert stored.cc == ["Gone <gone@example.com>", "kept@example.com"]
    assert Message.objects.get(send=stored).to == [
        "user@example.com",
        "kept@example.com",
        "secret@example.com",
    ]


def test_addresses_match_whatever_their_case_display_name_or_unicode_domain(
    api, send_key, seed_body, acme
):
    hold(acme, "Zoë <Reader@Bücher.Example>")
    assert Suppression.objects.get().address == "reader@xn--bcher-kva.example"
    response = send(api, send_key, dict(seed_body, to="READER@BÜCHER.example"))
    assert response.json()["status"] == "suppressed"


def test_a_quoted_local_part_is_the_same_address_as_the_unquoted_one(
    api, send_key, seed_body, smtp_server, acme
):
    # RFC 5321 4.1.2: a quoted local part that needs no quoting names the same mailbox
    # (receiving servers unquote it); found live, it went around a hard bounce's suppression.
    hold(acme, "user@example.com", reason=Suppression.Reason.HARD_BOUNCE)
    response = send(api, send_key, dict(seed_body, to='"user"@example.com'))
    assert response.json()["status"] == "suppressed"
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    "reason", ["hard_bounce", "complaint", "manual", "unsubscribe"], ids=lambda r: r
)
def test_transactional_mail_is_held_back_by_every_all_mail_suppression(
    api, send_key, seed_body, acme, reason
):
    hold(acme, "user@example.com", reason=reason)
    response = send(api, send_key, seed_body)
    assert response.json()["status"] == "suppressed"
    assert dropped(response.json()["sendId"])[0].data["suppressionReason"] == reason


def test_a_category_unsubscribe_holds_back_bulk_mail_but_not_transactional(
    api, send_key, seed_body, smtp_server, acme
):
    hold(acme, "user@example.com", reason="unsubscribe", category="bulk")
    bulk = send(api, send_key, dict(seed_body, policyKey="bulk"))
    assert bulk.json()["status"] == "suppressed"
    transactional = send(api, send_key, seed_body)
    assert transactional.json()["status"] == "sent"
    assert len(smtp_server.messages) == 1


def test_a_suppression_for_another_category_does_not_hold_back_bulk_mail(
    api, send_key, seed_body, acme
):
    hold(acme, "user@example.com", reason="unsubscribe", category="newsletter")
    assert send(api, send_key, dict(seed_body, policyKey="bulk")).json()["status"] == "sent"


def test_another_organizations_suppression_holds_back_nothing(api, send_key, seed_body, globex):
    hold(globex, "user@example.com", reason="hard_bounce")
    assert send(api, send_key, seed_body).json()["status"] == "sent"


def test_the_send_list_filters_suppressed_sends(api, alice_key, seed_body, acme):
    hold(acme, "user@example.com")
    sent = send(api, alice_key, dict(seed_body, to="other@example.com")).json()
    suppressed = send(api, alice_key, seed_body).json()
    page = api.get("/api/v1/sends?status=suppressed", **alice_key.bearer).json()
    assert [item["id"] for item in page["data"]] == [suppressed["sendId"]]
    assert page["data"][0]["status"] == "suppressed"
    assert sent["sendId"] != suppressed["sendId"]


# -- automatic suppression from the event log -----------------------------------------------


@pytest.fixture
def delivered(api, send_key, seed_body) -> Send:
    response = send(api, send_key, dict(seed_body, to="Reader <Reader@Example.com>"))
    return Send.objects.get(public_id=response.json()["sendId"])


def provider_event(send: Send, type: str, data: dict, event_id: str = "pe-1"):
    """What the anymail webhook does with a provider's event."""
    message = send.messages.get()
    return events.record(
        send=send,
        message=message,
        type=type,
        data=data,
        recipient="reader@example.com",
        dedupe=events.dedupe_key(message.provider_message_id, type, event_id),
    )


@pytest.mark.parametrize(
    ("type", "data", "reason"),
    [
        (
            "email.bounced",
            {"bounceType": "hard", "reason": "550 5.1.1 no such user"},
            "hard_bounce",
        ),
        ("email.complained", {"feedbackType": "abuse"}, "complaint"),
    ],
    ids=["hard bounce", "complaint"],
)
def test_a_hard_bounce_or_complaint_suppresses_the_address_for_all_mail(
    api, send_key, seed_body, delivered, type, data, reason
):
    event = provider_event(delivered, type, data)
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.category, suppression.reason) == (
        "reader@example.com",
        "",
        reason,
    )
    assert suppression.source_event == event.public_id
    change = SuppressionChange.objects.get()
    assert (change.action, change.actor, change.source_event) == (
        "added",
        f"event {event.public_id}",
        event.public_id,
    )
    # The next send, of any policy, is suppressed.
    for policy in ("transactional", "bulk"):
        body = dict(seed_body, to="reader@example.com", policyKey=policy)
        assert send(api, send_key, body).json()["status"] == "suppressed"
    # The provider's retry of the same webhook changes nothing.
    assert provider_event(delivered, type, data) is None
    assert Suppression.objects.count() == 1
    assert SuppressionChange.objects.count() == 1


def test_a_soft_bounce_suppresses_nothing(delivered):
    provider_event(delivered, "email.bounced", {"bounceType": "soft", "reason": "mailbox full"})
    assert not Suppression.objects.exists()


def test_a_second_hard_bounce_keeps_the_first_cause(delivered):
    first = provider_event(delivered, "email.bounced", {"bounceType": "hard"}, "pe-1")
    provider_event(delivered, "email.bounced", {"bounceType": "hard"}, "pe-2")
    assert list(Suppression.objects.values_list("source_event", flat=True)) == [first.public_id]


# -- one-click unsubscribe in the mail --------------------------------------------------------


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    return text, html


def test_a_bulk_mail_carries_the_one_click_headers_and_a_footer_link(
    api, send_key, seed_body, smtp_server, settings
):
    settings.SITE_URL = "https://mail.acme.test"
    response = send(api, send_key, dict(seed_body, policyKey="bulk"))
    assert response.json()["status"] == "sent"
    message = parsed(smtp_server.messages[0])
    # Folded onto its own line (the URL is longer than a header line should be): unfolded,
    # the value is the URL in angle brackets.
    header = message["List-Unsubscribe"].strip()
    assert header.startswith("<https://mail.acme.test/api/unsubscribe?token=")
    assert header.endswith(">")
    url = header[1:-1]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(message)
    assert text == f"Hi there\n\n--\nUnsubscribe from Acme: {url}\n"
    # The footer link is in the HTML as it is, never rewritten to a tracking redirect.
    assert f'<a href="{url}">Unsubscribe</a>' in html
    assert "/t/c/" not in html
    assert "/t/o/" in html  # tracking itself is on


def test_a_placeholder_puts_the_link_where_the_content_wants_it(
    api, send_key, seed_body, smtp_server
):
    body = dict(
        seed_body,
        policyKey="bulk",
        content="Bye: {{unsubscribe_url}}",
        htmlContent='<p><a href="{{unsubscribe_url}}">Leave</a></p>',
    )
    send(api, send_key, body)
    message = parsed(smtp_server.messages[0])
    url = message["List-Unsubscribe"].strip()[1:-1]
    text, html = parts(message)
    assert text.strip() == f"Bye: {url}"
    assert f'<a href="{url}">Leave</a>' in html
    assert "Unsubscribe</a>" not in html


def test_a_transactional_mail_carries_no_unsubscribe_header_or_footer(
    api, send_key, seed_body, smtp_server
):
    send(api, send_key, seed_body)
    message = parsed(smtp_server.messages[0])
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert parts(message)[0].strip() == "Hi there"


def test_callers_still_may_not_set_the_unsubscribe_headers(api, send_key, seed_body):
    body = dict(seed_body, headers={"List-Unsubscribe": "<https://evil.example/>"})
    response = send(api, send_key, body)
    assert response.status_code == 400
    assert "headers" in response.json()["details"]


def test_a_retry_of_a_failed_send_whose_address_was_suppressed_meanwhile_is_suppressed(
    api, send_key, seed_body, smtp_server, acme
):
    smtp_server.reply = "554 5.7.1 Rejected"
    failed = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="retry-1")
    assert failed.status_code == 500
    hold(acme, "user@example.com", reason=Suppression.Reason.COMPLAINT)
    smtp_server.reply = None
    retry = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="retry-1")
    assert retry.status_code == 200
    assert retry.json() == {
        "sendId": failed.json()["sendId"],
        "status": "suppressed",
        "messageId": None,
        "reused": False,
    }
    assert smtp_server.messages == []
    assert Send.objects.get().status == Send.Status.SUPPRESSED


def test_the_send_page_names_the_addresses_left_out(
    api, send_key, seed_body, smtp_server, acme, alice, client
):
    hold(acme, "gone@example.com")
    response = send(api, send_key, dict(seed_body, cc=["gone@example.com"]))
    client.force_login(alice.user)
    html = client.get(f"/dashboard/sends/{response.json()['sendId']}/").content.decode()
    assert '<dd id="left-out">gone@example.com (on the suppression list)</dd>' in html


def test_a_policy_may_name_only_a_category_of_its_organization(acme, globex):
    from django.core.exceptions import ValidationError

    from contacts.models import Category
    from sends.models import Policy

    Category.objects.create(organization=globex, key="vip", name="VIP")
    policy = Policy.objects.get(organization=acme, key="bulk")
    policy.category = "vip"
    with pytest.raises(ValidationError) as raised:
        policy.full_clean()
    assert set(raised.value.message_dict) == {"category"}
    policy.category = "bulk"
    policy.full_clean()
