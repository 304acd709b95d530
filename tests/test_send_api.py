"""The send API's happy path and its wire format (the seed's body on both paths)."""

import pytest
from django.core import mail

from sends.models import Event, IdempotencyRecord, Message, Send
from usage.models import UsageCounter

SEND = "/api/v1/emails/send"
GLOBAL = "/api/v1/emails/send-global"


def post(api, path, body, key, **headers):
    return api.post(path, body, format="json", **key.bearer, **headers)


@pytest.mark.parametrize("path", [SEND, GLOBAL])
def test_seed_body_is_sent_and_answers_exactly_four_fields(api, send_key, seed_body, path):
    response = post(api, path, seed_body, send_key)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"sendId", "status", "messageId", "reused"}
    assert body["status"] == "sent"
    assert body["reused"] is False
    assert body["sendId"].startswith("sends_")
    assert body["messageId"].startswith("<") and body["messageId"].endswith("@acme.test>")
    assert response["X-Request-Id"] == response["Fluxomail-Request-Id"]
    assert "Idempotency-Key" not in response
    assert "X-RateLimit-Limit" not in response

    send = Send.objects.get(public_id=body["sendId"])
    assert send.status == "sent"
    assert send.endpoint == path.rsplit("/", 1)[1]
    assert send.to == "user@example.com"
    assert send.request_id == response["X-Request-Id"]
    message = Message.objects.get(send=send)
    assert message.provider_message_id == body["messageId"]
    # The HTML as sent: the body as written, then the open pixel (transactional tracks opens).
    assert message.html.startswith('<p>Hi there</p><img src="')
    assert f"/t/o/{send.public_id}:" in message.html
    assert message.to == ["user@example.com"]
    assert list(Event.objects.filter(send=send).values_list("type", flat=True)) == ["email.sent"]

    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["user@example.com"]
    assert sent.from_email == "Acme <hello@acme.test>"
    assert sent.extra_headers["Message-ID"] == body["messageId"]
    assert sent.extra_headers["Feedback-ID"] == f"{body['sendId']}:acme:transactional:fluxomail"
    assert message.feedback_id == sent.extra_headers["Feedback-ID"]


def test_idempotency_key_is_echoed_and_stored(api, send_key, seed_body):
    response = post(api, SEND, seed_body, send_key, HTTP_IDEMPOTENCY_KEY="order-1")

    assert response.status_code == 200
    assert response["Idempotency-Key"] == "order-1"
    assert "Idempotency-Replayed" not in response
    record = IdempotencyRecord.objects.get(key="order-1")
    assert record.state == "completed"
    assert record.send.public_id == response.json()["sendId"]


def test_x_api_key_header_and_version_header_are_accepted(api, send_key, seed_body):
    response = api.post(
        SEND,
        seed_body,
        format="json",
        HTTP_X_API_KEY=send_key.token,
        HTTP_FLUXOMAIL_VERSION="2025-09-01",
    )

    assert response.status_code == 200
    assert response["Fluxomail-Version"] == "2025-09-01"


def test_send_global_counts_global_endpoint_sends(api, send_key, seed_body):
    post(api, GLOBAL, seed_body, send_key)
    post(api, SEND, seed_body, send_key)

    rows = {row.endpoint: row for row in UsageCounter.objects.all()}
    assert rows["send-global"].sends == 1
    assert rows["send-global"].global_endpoint_sends == 1
    assert rows["send"].sends == 1
    assert rows["send"].global_endpoint_sends == 0


def test_client_request_id_is_echoed_and_stored_on_the_send(api, send_key, seed_body):
    response = post(api, SEND, seed_body, send_key, HTTP_X_REQUEST_ID="client-abc.1")

    assert response["X-Request-Id"] == "client-abc.1"
    assert Send.objects.get().request_id == "client-abc.1"
