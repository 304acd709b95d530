"""Provider outcomes through django-anymail's tracking webhooks (SPEC section 7).

Mail goes out through the real send API and anymail's real ESP backends, which post over HTTP
to `EspApi`, a stand-in for the ESPs' sending APIs on 127.0.0.1 (there is no internet here; it
answers as each ESP documents, so the provider message id is the one a real send stores). The
ESPs' webhook payloads, written after each ESP's documented examples, are POSTed to anymail's
real webhook views with real credentials: basic auth, Mailgun's HMAC signature, SendGrid's
ECDSA signature. Amazon SNS signatures are not checked by anymail (15.x): the SES webhook is
protected by basic auth only, and is tested that way.
"""

import base64
import hashlib
import hmac
import json
import logging
import threading
import uuid
from datetime import datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import OperationalError
from django.utils import timezone

from contacts.models import Suppression, SuppressionChange
from sends import provider_events
from sends.events import iso
from sends.models import Event, Message
from tests.locks import wait_for_a_lock_wait
from tests.problems import PROBLEM_MEMBERS
from tests.test_settings import load_settings

SECRET = "esp:s3cret-hook"
MAILGUN_KEY = "mailgun-signing-key-0123456789"
BASIC = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}
PREFIX = "/webhooks/anymail"


class EspApi:
    """The ESPs' sending APIs as they document their answers, on 127.0.0.1."""

    def __init__(self):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.issued: dict[str, str] = {}  # per-recipient ids (Mailjet) by address
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.requests.append((self.path, dict(self.headers), body))
                status, answer = api.answer(self.path, body)
                payload = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body: bytes) -> tuple[int, dict | None]:
        if path == "/postmark/email":
            sent = json.loads(body)
            return 200, {
                "To": sent["To"],
                "SubmittedAt": "2026-03-02T09:00:00.0000000Z",
                "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0,
                "Message": "OK",
            }
        if path == "/sendgrid/v3/mail/send":
            return 202, None  # SendGrid answers 202 with no body; anymail made the id
        if path.startswith("/mailgun/v3/") and path.endswith("/messages"):
            return 200, {"id": f"<{uuid.uuid4().hex}@acme.test>", "message": "Queued. Thank you."}
        if path == "/mailjet/v3.1/send":
            sent = json.loads(body)
            # anymail sends To per message, Cc and Bcc in Globals.
            sent = {**sent["Globals"], **sent["Messages"][0]}
            return 200, {
                "Messages": [
                    {
                        "Status": "success",
                        **{
                            field: [
                                self._mailjet_recipient(recipient["Email"])
                                for recipient in sent.get(field, [])
                                # Mailjet leaves out the recipients it refused.
                                if not recipient["Email"].startswith("refused")
                            ]
                            for field in ("To", "Cc", "Bcc")
                        },
                    }
                ]
            }
        if path == "/ses/v2/email/outbound-emails":
            return 200, {"MessageId": f"0100018e{uuid.uuid4().hex}-000000"}
        return 404, {"message": "unknown path"}

    def _mailjet_recipient(self, email: str) -> dict:
        message_id = 288230376150000000 + len(self.issued)
        self.issued[email] = str(message_id)
        return {
            "Email": email,
            "MessageUUID": str(uuid.uuid4()),
            "MessageID": message_id,
            "MessageHref": f"https://api.mailjet.com/v3/REST/message/{message_id}",
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def esp_api():
    api = EspApi()
    yield api
    api.stop()


BACKENDS = {
    "postmark": ("anymail.backends.postmark.EmailBackend", {"POSTMARK_SERVER_TOKEN": "pm-token"}),
    "sendgrid": ("anymail.backends.sendgrid.EmailBackend", {"SENDGRID_API_KEY": "SG.key"}),
    "mailgun": ("anymail.backends.mailgun.EmailBackend", {"MAILGUN_API_KEY": "mg-key"}),
    "mailjet": (
        "anymail.backends.mailjet.EmailBackend",
        {"MAILJET_API_KEY": "mj-key", "MAILJET_SECRET_KEY": "mj-secret"},
    ),
    "amazon_ses": (
        "anymail.backends.amazon_ses.EmailBackend",
        {
            "AMAZON_SES_SESSION_PARAMS": {
                "aws_access_key_id": "AKIDEXAMPLE",
                "aws_secret_access_key": "example-secret",
                "region_name": "us-east-1",
            }
        },
    ),
}


@pytest.fixture
def esp(settings, esp_api):
    """Switches sending to an anymail ESP backend posting to the stand-in; the webhooks get
    their secret and Mailgun its signing key."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}

    def use(name: str) -> None:
        backend, options = BACKENDS[name]
        settings.EMAIL_BACKEND = backend
        api_url = f"{esp_api.url}/{name}/"
        urls = {
            "postmark": {"POSTMARK_API_URL": api_url},
            "sendgrid": {"SENDGRID_API_URL": api_url + "v3/"},
            "mailgun": {"MAILGUN_API_URL": api_url + "v3"},
            "mailjet": {"MAILJET_API_URL": api_url + "v3.1/"},
            "amazon_ses": {"AMAZON_SES_CLIENT_PARAMS": {"endpoint_url": f"{esp_api.url}/ses"}},
        }
        settings.ANYMAIL = {**settings.ANYMAIL, **options, **urls[name]}

    return use


def send_mail(api, key, **fields) -> tuple[str, str]:
    """Sends through the API; the send's id and the provider message id it stored."""
    body = {"to": "user@example.com", "subject": "Hello", "content": "Hi there", **fields}
    response = api.post("/api/v1/emails/send", body, format="json", **key.bearer)
    assert response.status_code == 200, response.content
    send_id = response.json()["sendId"]
    message = Message.objects.get(send__public_id=send_id)
    assert message.provider_message_id == response.json()["messageId"]
    return send_id, message.provider_message_id


def moment(seconds_ago: int = 1) -> datetime:
    """A time the ESP reports: whole seconds, in the past."""
    return (timezone.now() - timedelta(seconds=seconds_ago)).replace(microsecond=0)


def post_json(client, esp_path: str, payload, auth=BASIC, **headers):
    return client.post(
        f"{PREFIX}/{esp_path}",
        data=json.dumps(payload),
        content_type="application/json",
        **auth,
        **headers,
    )


def provider_events_of(send_id: str) -> list[Event]:
    return list(
        Event.objects.filter(send__public_id=send_id)
        .exclude(type=Event.Type.SENT)
        .order_by("occurred_at", "id")
    )


def envelope_data(send_id: str, provider_id: str | None, to: str = "user@example.com") -> dict:
    return {
        "sendId": send_id,
        "providerMessageId": provider_id,
        "to": to,
        "subject": "Hello",
        "metadata": {},
    }


def assert_listed_once(api, key, send_id: str, expected: list[dict]) -> None:
    """`expected` (type, created, data) are the send's provider events, each exactly once in
    the events API and in the send's timeline, both newest first."""
    listed = api.get("/api/v1/events", {"limit": 100}, **key.bearer).json()["events"]
    listed = [e for e in listed if e["data"]["sendId"] == send_id and e["type"] != "email.sent"]
    timeline = api.get(f"/api/v1/sends/{send_id}", **key.bearer).json()["events"]
    timeline = [e for e in timeline if e["type"] != "email.sent"]
    ids = [event.public_id for event in reversed(provider_events_of(send_id))]
    for shown in (listed, timeline):
        assert [event["id"] for event in shown] == ids
        assert sorted(
            ({k: e[k] for k in ("type", "created", "data")} for e in shown), key=json.dumps
        ) == sorted(expected, key=json.dumps)


def metrics(api, key) -> dict:
    return api.get("/api/v1/metrics", {"window": "all"}, **key.bearer).json()["metrics"]


# Settings ------------------------------------------------------------------------------------


def test_production_start_with_an_esp_backend_and_no_webhook_secret_fails():
    result = load_settings(
        FLUXOMAIL_ENV="production",
        SECRET_KEY="s" * 50,
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "ANYMAIL_WEBHOOK_SECRET must be set when FLUXOMAIL_ENV=production" in result.stderr


def test_production_start_with_an_esp_backend_and_a_webhook_secret_loads():
    result = load_settings(
        FLUXOMAIL_ENV="production",
        SECRET_KEY="s" * 50,
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_WEBHOOK_SECRET="esp:one,esp:two",
    )
    assert result.returncode == 0, result.stderr


def test_webhook_secret_without_a_password_fails_loudly():
    result = load_settings(ANYMAIL_WEBHOOK_SECRET="just-a-word")
    assert result.returncode != 0
    assert "ANYMAIL_WEBHOOK_SECRET must be user:password pairs" in result.stderr


# Postmark (basic auth) -----------------------------------------------------------------------


def postmark_delivery(provider_id: str, at: datetime) -> dict:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": provider_id,
        "Recipient": "user@example.com",
        "Tag": "",
        "DeliveredAt": iso(at),
        "Details": "smtp;250 2.0.0 OK 1772442005 a1si2 - gsmtp",
        "Metadata": {},
    }


def postmark_bounce(provider_id: str, at: datetime, **fields) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": provider_id,
        "Metadata": {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "user@example.com",
        "From": "hello@acme.test",
        "BouncedAt": iso(at),
        "DumpAvailable": False,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Hello",
        **fields,
    }


def test_postmark_delivery_bounce_and_complaint_become_events(client, api, alice_key, esp):
    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)
    at = moment()
    complaint = postmark_bounce(
        provider_id,
        at,
        RecordType="SpamComplaint",
        ID=4323372036854775808,
        Type="SpamComplaint",
        TypeCode=512,
        Details="Test spam complaint details",
    )

    for payload in (
        postmark_delivery(provider_id, at),
        postmark_bounce(provider_id, at),
        complaint,
    ):
        response = post_json(client, "postmark/tracking/", payload)
        assert response.status_code == 200

    base = envelope_data(send_id, provider_id)
    assert_listed_once(
        api,
        alice_key,
        send_id,
        [
            {
                "type": "email.delivered",
                "created": iso(at),
                "data": {
                    **base,
                    "response": "250 2.0.0 OK 1772442005 a1si2 - gsmtp",
                    "smtpCode": 250,
                },
            },
            {
                "type": "email.bounced",
                "created": iso(at),
                "data": {
                    **base,
                    "bounceType": "hard",
                    "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                    "smtpCode": 550,
                },
            },
            {
                "type": "email.complained",
                "created": iso(at),
                "data": {**base, "feedbackType": None},
            },
        ],
    )
    totals = metrics(api, alice_key)
    assert (totals["totalSent"], totals["totalDelivered"], totals["totalBounced"]) == (1, 1, 1)
    assert (totals["totalComplained"], totals["bounceRate"], totals["deliveryRate"]) == (1, 1, 1)


def test_postmark_transient_bounce_is_a_delay_with_its_smtp_code(client, api, alice_key, esp):
    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)
    at = moment()
    transient = postmark_bounce(
        provider_id,
        at,
        ID=4323372036854775900,
        Type="Transient",
        TypeCode=2,
        Name="Message delayed",
        Details="smtp;421 4.7.0 Try again later, closing connection.",
        Inactive=False,
    )

    assert post_json(client, "postmark/tracking/", transient).status_code == 200

    [event] = provider_events_of(send_id)
    assert (event.type, event.data, event.smtp_code) == (
        "email.delayed",
        {
            "reason": "421 4.7.0 Try again later, closing connection.",
            "smtpCode": 421,
            "to": "user@example.com",
        },
        421,
    )
    assert metrics(api, alice_key)["totalDelayed"] == 1


def test_replayed_webhooks_record_nothing_twice(client, api, alice_key, esp):
    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)
    at = moment()
    bounce = postmark_bounce(provider_id, at)
    # Postmark's notice that it suppressed the address after the bounce: anymail reports it as
    # another bounce of the same message and recipient.
    suppression = {
        "RecordType": "SubscriptionChange",
        "MessageID": provider_id,
        "ServerID": 23,
        "MessageStream": "outbound",
        "ChangedAt": iso(at),
        "Recipient": "user@example.com",
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "HardBounce",
        "Tag": "",
        "Metadata": {},
    }

    for payload in (bounce, bounce, suppression, postmark_delivery(provider_id, at)) * 2:
        assert post_json(client, "postmark/tracking/", payload).status_code == 200

    assert [event.type for event in provider_events_of(send_id)] == [
        "email.bounced",
        "email.delivered",
    ]
    totals = metrics(api, alice_key)
    assert (totals["totalBounced"], totals["totalDelivered"]) == (1, 1)


def test_esp_opens_and_clicks_are_not_recorded(client, api, alice_key, esp):
    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)
    common = {
        "MessageID": provider_id,
        "Recipient": "user@example.com",
        "ReceivedAt": iso(moment()),
        "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)",
        "Geo": {"IP": "192.0.2.10", "Country": "Serbia"},
        "Client": {"Name": "Chrome", "Company": "Google", "Family": "Chrome"},
        "Platform": "Desktop",
        "Tag": "",
        "Metadata": {},
    }
    opened = {"RecordType": "Open", "FirstOpen": True, "ReadSeconds": 5, **common}
    clicked = {"RecordType": "Click", "OriginalLink": "https://shop.example/", **common}

    for payload in (opened, clicked):
        assert post_json(client, "postmark/tracking/", payload).status_code == 200

    assert provider_events_of(send_id) == []
    assert metrics(api, alice_key)["totalOpened"] == 0


def test_event_for_an_unknown_message_is_acknowledged_and_logged(client, alice, esp, caplog):
    payload = postmark_delivery("9d1b6a5e-0000-4000-8000-000000000000", moment())

    with caplog.at_level(logging.INFO, logger="fluxomail.provider_events"):
        response = post_json(client, "postmark/tracking/", payload)

    assert response.status_code == 200
    assert Event.objects.count() == 0
    [line] = [r.getMessage() for r in caplog.records if r.name == "fluxomail.provider_events"]
    assert line == (
        "Postmark email.delivered event for no message of this service "
        "(provider id '9d1b6a5e-0000-4000-8000-000000000000'): acknowledged"
    )


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"esp:wrong").decode()},
        {"HTTP_AUTHORIZATION": "Bearer " + SECRET},
    ],
    ids=["missing", "wrong password", "not basic"],
)
def test_missing_or_wrong_basic_auth_is_401_and_records_nothing(client, api, alice_key, esp, auth):
    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)

    response = post_json(client, "postmark/tracking/", postmark_bounce(provider_id, moment()), auth)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="fluxomail webhooks"'
    body = response.json()
    assert set(body) == PROBLEM_MEMBERS
    assert (body["code"], body["message"]) == (
        "invalid_key",
        "Missing or wrong webhook credentials",
    )
    assert provider_events_of(send_id) == []


def test_webhooks_are_off_without_a_secret(client, settings, alice):
    settings.ANYMAIL = {}

    response = post_json(client, "postmark/tracking/", postmark_delivery("x", moment()))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unknown_webhook_path_is_a_problem_404(client, esp):
    response = post_json(client, "nosuchesp/tracking/", {})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("esp_path", "body"),
    [
        ("postmark/tracking/", "not json"),
        ("postmark/tracking/", "[1, 2]"),
        ("sendgrid/tracking/", '{"event": "delivered"}'),
        ("sendgrid/tracking/", '[{"event": "delivered", "timestamp": "soon"}]'),
        ("mailjet/tracking/", '{"no": "event"}'),
        ("amazon_ses/tracking/", "\xff garbage"),
    ],
)
def test_malformed_payload_is_400_never_500(client, db, esp, esp_path, body):
    response = client.post(
        f"{PREFIX}/{esp_path}",
        data=body.encode("utf-8", "surrogateescape"),
        content_type="application/json",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        **BASIC,
    )

    assert response.status_code == 400
    assert response.json()["message"] == "Malformed webhook payload"
    assert Event.objects.count() == 0


def test_odd_values_in_a_readable_payload_are_acknowledged_and_kept_out(
    client, api, alice_key, esp
):
    esp("sendgrid")
    send_id, provider_id = send_mail(api, alice_key)
    odd = [
        # A message id that is no string, a recipient that is no address: no message found.
        {"event": "bounce", "timestamp": 1772442005, "anymail_id": {"x": 1}, "email": 12},
        # NUL characters, a lone surrogate, a huge reason, an IP as the host: stored cleaned.
        {
            "event": "deferred",
            "timestamp": 1772442005,
            "anymail_id": provider_id,
            "email": "user@example.com",
            "sg_event_id": "ev\x00id",
            "response": "451 4.3.0 busy\x00 \ud800" + "x" * 5000,
        },
    ]

    response = post_json(client, "sendgrid/tracking/", odd)

    assert response.status_code == 200
    [event] = provider_events_of(send_id)
    assert event.type == "email.delayed"
    assert event.data["reason"] == ("451 4.3.0 busy ?" + "x" * 5000)[:1000]
    assert event.data["smtpCode"] == 451


def test_database_outage_answers_503_so_that_the_esp_retries(
    client, api, alice_key, esp, monkeypatch
):
    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)

    def unavailable(self, provider_message_ids):
        raise OperationalError("connection refused")

    monkeypatch.setattr(type(Message.objects), "for_provider_ids", unavailable)
    response = post_json(client, "postmark/tracking/", postmark_delivery(provider_id, moment()))

    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert response.json()["code"] == "service_unavailable"
    assert provider_events_of(send_id) == []


def test_missing_signing_key_answers_503_and_names_the_setting(client, settings, db, caplog):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    payload = mailgun_payload("<m1@acme.test>", moment(), "delivered")

    with caplog.at_level(logging.ERROR, logger="fluxomail.provider_webhooks"):
        response = post_json(client, "mailgun/tracking/", payload)

    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    [line] = [r.getMessage() for r in caplog.records if r.name == "fluxomail.provider_webhooks"]
    assert "MAILGUN_WEBHOOK_SIGNING_KEY" in line
    assert Event.objects.count() == 0


def test_head_answers_without_credentials_for_url_checks(client, esp):
    response = client.head(f"{PREFIX}/postmark/tracking/")

    assert response.status_code == 200


# SendGrid (basic auth, or its signed event webhook) ------------------------------------------


def sendgrid_event(provider_id: str, at: datetime, event: str, **fields) -> dict:
    return {
        "email": "user@example.com",
        "timestamp": int(at.timestamp()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": [],
        "sg_event_id": f"sg-{event}-{uuid.uuid4().hex[:12]}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "anymail_id": provider_id,
        **fields,
    }


def test_sendgrid_batch_records_each_outcome_once(client, api, alice_key, esp):
    esp("sendgrid")
    send_id, provider_id = send_mail(api, alice_key, cc=["copy@example.net"])
    at = moment()
    batch = [
        sendgrid_event(provider_id, at, "processed"),
        sendgrid_event(provider_id, at, "deferred", response="400 try again later", attempt="5"),
        sendgrid_event(provider_id, at, "delivered", response="250 OK", ip="192.0.2.1"),
        sendgrid_event(provider_id, at, "open", useragent="Mozilla/5.0", ip="192.0.2.7"),
        sendgrid_event(
            provider_id,
            at,
            "bounce",
            email="copy@example.net",
            type="blocked",
            status="5.7.1",
            reason="550 5.7.1 Message rejected as spam",
            bounce_classification="Content",
        ),
    ]

    for _ in range(2):
        assert post_json(client, "sendgrid/tracking/", batch).status_code == 200

    base = envelope_data(send_id, provider_id)
    assert_listed_once(
        api,
        alice_key,
        send_id,
        [
            {
                "type": "email.delayed",
                "created": iso(at),
                "data": {**base, "reason": "400 try again later", "smtpCode": 400},
            },
            {
                "type": "email.delivered",
                "created": iso(at),
                "data": {**base, "response": "250 OK", "smtpCode": 250},
            },
            {
                "type": "email.bounced",
                "created": iso(at),
                "data": {
                    **base,
                    "to": "copy@example.net",
                    "bounceType": "soft",
                    "reason": "550 5.7.1 Message rejected as spam",
                    "smtpCode": 550,
                },
            },
        ],
    )
    bounce = Event.objects.get(type="email.bounced")
    assert bounce.recipient_domain == "example.net"
    totals = metrics(api, alice_key)
    assert (totals["totalDelayed"], totals["totalDelivered"], totals["totalBounced"]) == (1, 1, 1)


def test_sendgrid_signed_event_webhook_is_verified(client, settings, api, alice_key, esp):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    esp("sendgrid")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": base64.b64encode(public).decode(),
    }
    send_id, provider_id = send_mail(api, alice_key)
    body = json.dumps([sendgrid_event(provider_id, moment(), "delivered", response="250 OK")])
    stamp = str(int(timezone.now().timestamp()))

    def post(signed: str, sent: str):
        signature = key.sign((stamp + signed).encode(), ec.ECDSA(hashes.SHA256()))
        return client.post(
            f"{PREFIX}/sendgrid/tracking/",
            data=sent,
            content_type="application/json",
            HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=base64.b64encode(signature).decode(),
            HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=stamp,
            **BASIC,
        )

    tampered = post(body, body.replace("250 OK", "250 Fine"))
    assert tampered.status_code == 403
    assert tampered.json()["message"] == "Webhook signature check failed"
    assert provider_events_of(send_id) == []

    assert post(body, body).status_code == 200
    assert [event.type for event in provider_events_of(send_id)] == ["email.delivered"]


# Mailgun (HMAC signature) --------------------------------------------------------------------


def mailgun_payload(provider_id: str, at: datetime, event: str, key=MAILGUN_KEY, **data) -> dict:
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]
    stamp = str(int(at.timestamp()))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": {
            "id": uuid.uuid4().hex[:22],
            "timestamp": at.timestamp(),
            "log-level": "info",
            "event": event,
            "recipient": "user@example.com",
            "recipient-domain": "example.com",
            "envelope": {
                "transport": "smtp",
                "sender": "bounce+abc@acme.test",
                "sending-ip": "198.51.100.20",
                "targets": "user@example.com",
            },
            "message": {
                "headers": {
                    "to": "user@example.com",
                    "message-id": provider_id.strip("<>"),
                    "from": "Acme <hello@acme.test>",
                    "subject": "Hello",
                },
                "attachments": [],
                "size": 2012,
            },
            "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
            "tags": [],
            "user-variables": {},
            **data,
        },
    }


def mailgun_status(code: int, message: str, **fields) -> dict:
    return {
        "tls": True,
        "mx-host": "mx.example.com",
        "code": code,
        "description": "",
        "session-seconds": 0.43,
        "utf8": True,
        "attempt-no": 1,
        "message": message,
        "certificate-verified": True,
        **fields,
    }


def test_mailgun_outcomes_carry_smtp_code_and_mx_host(client, api, alice_key, esp):
    esp("mailgun")
    send_id, provider_id = send_mail(api, alice_key)
    at = moment()
    payloads = [
        mailgun_payload(
            provider_id,
            at,
            "failed",
            severity="temporary",
            reason="generic",
            **{
                "delivery-status": mailgun_status(
                    452, "4.2.2 The email account is over quota.", **{"retry-seconds": 600}
                )
            },
        ),
        mailgun_payload(
            provider_id,
            at,
            "failed",
            severity="permanent",
            reason="bounce",
            **{"delivery-status": mailgun_status(550, "5.1.1 The email account does not exist.")},
        ),
        mailgun_payload(provider_id, at, "complained"),
    ]

    for payload in payloads:
        assert post_json(client, "mailgun/tracking/", payload).status_code == 200

    base = envelope_data(send_id, provider_id)
    assert_listed_once(
        api,
        alice_key,
        send_id,
        [
            {
                "type": "email.delayed",
                "created": iso(at),
                "data": {
                    **base,
                    "reason": "4.2.2 The email account is over quota.",
                    "smtpCode": 452,
                    "mtaHost": "mx.example.com",
                },
            },
            {
                "type": "email.bounced",
                "created": iso(at),
                "data": {
                    **base,
                    "bounceType": "hard",
                    "reason": "5.1.1 The email account does not exist.",
                    "smtpCode": 550,
                    "mtaHost": "mx.example.com",
                },
            },
            {
                "type": "email.complained",
                "created": iso(at),
                "data": {**base, "feedbackType": None},
            },
        ],
    )
    filtered = api.get(
        "/api/v1/events", {"smtpCode": 452, "mtaHost": "mx.example.com"}, **alice_key.bearer
    )
    assert [event["type"] for event in filtered.json()["events"]] == ["email.delayed"]


def test_mailgun_wrong_signature_is_403_and_records_nothing(client, api, alice_key, esp):
    esp("mailgun")
    send_id, provider_id = send_mail(api, alice_key)
    status = {"delivery-status": mailgun_status(250, "OK")}
    forged = mailgun_payload(provider_id, moment(), "delivered", key="not-the-key", **status)

    response = post_json(client, "mailgun/tracking/", forged)

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_key"
    assert provider_events_of(send_id) == []


# Amazon SES (SNS notifications; basic auth) --------------------------------------------------


def sent_headers(esp_api) -> list[dict]:
    """The headers of the last message handed to the SES stand-in, as SES echoes them."""
    raw = json.loads(esp_api.requests[-1][2])["Content"]["Raw"]["Data"]
    parsed = message_from_bytes(base64.b64decode(raw))
    return [{"name": name, "value": str(value)} for name, value in parsed.items()]


def sns_post(client, ses_event: dict, at: datetime, auth=BASIC):
    notification_id = str(uuid.uuid4())
    notification = {
        "Type": "Notification",
        "MessageId": notification_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": iso(at),
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+..",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    return client.post(
        f"{PREFIX}/amazon_ses/tracking/",
        data=json.dumps(notification),
        content_type="text/plain; charset=UTF-8",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        HTTP_X_AMZ_SNS_MESSAGE_ID=notification_id,
        HTTP_X_AMZ_SNS_TOPIC_ARN=notification["TopicArn"],
        **auth,
    )


def ses_mail(provider_id: str, at: datetime, headers: list[dict], destination: list[str]):
    return {
        "timestamp": iso(at),
        "source": "hello@acme.test",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/acme.test",
        "sendingAccountId": "123456789012",
        "messageId": provider_id,
        "destination": destination,
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {"from": ["hello@acme.test"], "to": destination, "subject": "Hello"},
        "tags": {"ses:configuration-set": ["fluxomail"]},
    }


def test_amazon_ses_notifications_become_events(client, api, alice_key, esp, esp_api):
    esp("amazon_ses")
    send_id, provider_id = send_mail(api, alice_key, cc=["copy@example.net"])
    at = moment()
    recipients = ["user@example.com", "copy@example.net"]
    mail = ses_mail(provider_id, at, sent_headers(esp_api), recipients)
    stamp = iso(at)
    ses_events = [
        {
            "eventType": "Delivery",
            "mail": mail,
            "delivery": {
                "timestamp": stamp,
                "processingTimeMillis": 546,
                "recipients": ["user@example.com"],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
                "remoteMtaIp": "203.0.113.5",
            },
        },
        {
            "eventType": "DeliveryDelay",
            "mail": mail,
            "deliveryDelay": {
                "timestamp": stamp,
                "delayType": "TransientCommunicationFailure",
                "expirationTime": stamp,
                "delayedRecipients": [
                    {
                        "emailAddress": "copy@example.net",
                        "status": "4.4.1",
                        "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to the server",
                    }
                ],
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
                "remoteMtaIp": "203.0.113.6",
            },
        },
        {
            "eventType": "Bounce",
            "mail": mail,
            "bounce": {
                "feedbackId": "0100018e-bounce-000000",
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": "copy@example.net",
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": stamp,
                "remoteMtaIp": "203.0.113.6",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
        },
        {
            "eventType": "Complaint",
            "mail": mail,
            "complaint": {
                "feedbackId": "0100018e-complaint-000000",
                "complaintSubType": None,
                "complainedRecipients": [{"emailAddress": "user@example.com"}],
                "timestamp": stamp,
                "userAgent": "Mozilla/5.0 (Windows NT 10.0) Feedback-Loop",
                "complaintFeedbackType": "abuse",
                "arrivalDate": stamp,
            },
        },
    ]

    for ses_event in ses_events:
        assert sns_post(client, ses_event, at).status_code == 200

    base = envelope_data(send_id, provider_id)
    copy = {**base, "to": "copy@example.net"}
    assert_listed_once(
        api,
        alice_key,
        send_id,
        [
            {
                "type": "email.delivered",
                "created": stamp,
                "data": {**base, "response": "250 2.6.0 Message received", "smtpCode": 250},
            },
            {
                "type": "email.delayed",
                "created": stamp,
                "data": {
                    **copy,
                    "reason": "421 4.4.1 Unable to connect to the server",
                    "smtpCode": 421,
                },
            },
            {
                "type": "email.bounced",
                "created": stamp,
                "data": {
                    **copy,
                    "bounceType": "hard",
                    "reason": "550 5.1.1 user unknown",
                    "smtpCode": 550,
                },
            },
            {
                "type": "email.complained",
                "created": stamp,
                "data": {**base, "feedbackType": "abuse"},
            },
        ],
    )
    totals = metrics(api, alice_key)
    assert (totals["totalDelivered"], totals["totalDelayed"]) == (1, 1)
    assert (totals["totalBounced"], totals["totalComplained"]) == (1, 1)


def test_amazon_ses_event_before_its_message_id_is_known_is_matched_by_feedback_id(
    client, api, alice_key, esp, esp_api, charlie
):
    esp("amazon_ses")
    send_id, provider_id = send_mail(api, alice_key)
    headers = sent_headers(esp_api)
    assert {"name": "Feedback-ID", "value": f"{send_id}:acme:transactional:fluxomail"} in headers
    at = moment()
    delivery = {
        "eventType": "Delivery",
        "mail": ses_mail("0100018e-not-stored-yet-000000", at, headers, ["user@example.com"]),
        "delivery": {
            "timestamp": iso(at),
            "recipients": ["user@example.com"],
            "smtpResponse": "250 OK",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
    }
    # The same Feedback-ID with another organization's slug names no send.
    forged_headers = [{"name": "Feedback-ID", "value": f"{send_id}:globex:transactional:fluxomail"}]
    forged = {**delivery, "mail": {**delivery["mail"], "headers": forged_headers}}

    assert sns_post(client, forged, at).status_code == 200
    assert provider_events_of(send_id) == []
    assert sns_post(client, delivery, at).status_code == 200

    [event] = provider_events_of(send_id)
    assert event.type == "email.delivered"
    assert event.message.provider_message_id == provider_id


def test_amazon_ses_post_without_credentials_gets_the_basic_challenge(client, api, alice_key, esp):
    esp("amazon_ses")
    send_id, provider_id = send_mail(api, alice_key)
    delivery = {
        "eventType": "Delivery",
        "mail": ses_mail(provider_id, moment(), [], ["user@example.com"]),
        "delivery": {"timestamp": iso(moment()), "recipients": ["user@example.com"]},
    }

    response = sns_post(client, delivery, moment(), auth={})

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert provider_events_of(send_id) == []


# Per-recipient provider ids (Mailjet) --------------------------------------------------------


def mailjet_event(provider_id: str, email: str, at: datetime, event: str, **fields) -> dict:
    return {
        "event": event,
        "time": int(at.timestamp()),
        "MessageID": int(provider_id),
        "Message_GUID": str(uuid.uuid4()),
        "email": email,
        "mj_campaign_id": 0,
        "mj_contact_id": 1234,
        "customcampaign": "",
        "CustomID": "",
        "Payload": "",
        **fields,
    }


def test_each_per_recipient_id_finds_its_message(client, api, alice_key, esp, esp_api):
    esp("mailjet")
    cc = [f"copy{n}@example.net" for n in range(49)]
    # 50 recipients: their ids joined are far longer than a 255-character column.
    send_id, joined = send_mail(api, alice_key, cc=cc)
    assert sorted(joined.split(",")) == sorted(esp_api.issued.values())
    at = moment()
    batch = [
        mailjet_event(
            esp_api.issued["user@example.com"],
            "user@example.com",
            at,
            "sent",
            smtp_reply="250 2.0.0 OK queued as 4F1B2",
        ),
        mailjet_event(
            esp_api.issued["copy7@example.net"],
            "copy7@example.net",
            at,
            "bounce",
            blocked=False,
            hard_bounce=True,
            error_related_to="recipient",
            error="user unknown",
        ),
    ]

    assert post_json(client, "mailjet/tracking/", batch).status_code == 200

    base = envelope_data(send_id, joined)
    assert_listed_once(
        api,
        alice_key,
        send_id,
        [
            {
                "type": "email.delivered",
                "created": iso(at),
                "data": {**base, "response": "250 2.0.0 OK queued as 4F1B2", "smtpCode": 250},
            },
            {
                "type": "email.bounced",
                "created": iso(at),
                "data": {
                    **base,
                    "to": "copy7@example.net",
                    "bounceType": "hard",
                    "reason": "user unknown",
                },
            },
        ],
    )


def test_a_recipient_the_esp_refused_adds_no_id(api, alice_key, esp, esp_api):
    esp("mailjet")

    send_id, joined = send_mail(api, alice_key, cc=["copy@example.net", "refused@example.net"])

    assert sorted(joined.split(",")) == sorted(esp_api.issued.values())
    assert len(esp_api.issued) == 2


# The bounce type and data without an ESP's own word -------------------------------------------


@pytest.mark.parametrize(
    ("anymail_type", "fields", "data"),
    [
        (
            "bounced",
            {"mta_response": "smtp;421 4.2.2 Mailbox full"},
            {"bounceType": "soft", "reason": "421 4.2.2 Mailbox full", "smtpCode": 421},
        ),
        (
            "bounced",
            {"mta_response": "Remote said: 5.1.1 user unknown"},
            {"bounceType": "hard", "reason": "Remote said: 5.1.1 user unknown"},
        ),
        ("bounced", {}, {"bounceType": "hard", "reason": None}),
        ("bounced", {"reject_reason": "timed_out"}, {"bounceType": "soft", "reason": "timed_out"}),
        (
            "rejected",
            {"reject_reason": "invalid", "description": "Bad address"},
            {"bounceType": "hard", "reason": "Bad address"},
        ),
        (
            "rejected",
            {"reject_reason": "blocked", "mta_response": "550 policy"},
            {"bounceType": "soft", "reason": "550 policy", "smtpCode": 550},
        ),
    ],
)
def test_bounce_type_follows_the_smtp_answer_then_the_reject_reason(anymail_type, fields, data):
    from anymail.signals import AnymailTrackingEvent

    event = AnymailTrackingEvent(event_type=anymail_type, esp_event={}, **fields)

    assert provider_events.outcome_data("email.bounced", event, {}) == data


def test_an_ip_address_is_never_kept_as_the_mta_host():
    from anymail.signals import AnymailTrackingEvent

    event = AnymailTrackingEvent(event_type="deferred", mta_response="451 try later")
    for host, kept in (
        ("203.0.113.5", None),
        ("[2001:db8::1]", None),
        ("MX.Example.com", "mx.example.com"),
    ):
        data = provider_events.outcome_data("email.delayed", event, {"mtaHost": host})
        assert data.get("mtaHost") == kept


# Batches ---------------------------------------------------------------------------------------


@pytest.fixture
def announced():
    """The events announced through sends.signals.event_recorded, as (id, whether the
    announcing connection was still in a transaction)."""
    from django.db import connection

    from sends.signals import event_recorded

    heard: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def listen(sender, event, **kwargs):
        with lock:
            heard.append((event.public_id, connection.in_atomic_block))

    event_recorded.connect(listen, dispatch_uid="tests.announced")
    yield heard
    event_recorded.disconnect(dispatch_uid="tests.announced")


def hard_bounce(provider_id: str, at: datetime, email: str) -> dict:
    return sendgrid_event(
        provider_id, at, "bounce", email=email, type="bounce", reason="550 5.1.1 no such user"
    )


@pytest.mark.parametrize("kind", ["delivered", "hard bounce"])
def test_a_large_sendgrid_batch_costs_a_bounded_number_of_queries(
    client,
    api,
    alice_key,
    esp,
    announced,
    django_assert_max_num_queries,
    django_capture_on_commit_callbacks,
    kind,
):
    # SendGrid posts up to 768 KB a batch (about 3,000 events); found live: 500 deliveries of
    # one message took 10 s through gunicorn and 3,000 bounces more than the 30 s worker
    # timeout, when each event cost its own queries (lookup, insert, counter, suppression).
    # A batch is now recorded a chunk at a time, each chunk a fixed number of statements.
    esp("sendgrid")
    send_id, provider_id = send_mail(api, alice_key)
    at = moment()
    addresses = [f"user{i}@example.com" for i in range(200)]
    if kind == "delivered":
        batch = [sendgrid_event(provider_id, at, "delivered", email=a) for a in addresses]
    else:
        batch = [hard_bounce(provider_id, at, a) for a in addresses]
    type = {"delivered": "email.delivered", "hard bounce": "email.bounced"}[kind]

    for _ in range(2):  # the ESP's retry records nothing and costs no more
        with django_assert_max_num_queries(40), django_capture_on_commit_callbacks(execute=True):
            assert post_json(client, "sendgrid/tracking/", batch).status_code == 200

    recorded = Event.objects.filter(send__public_id=send_id, type=type)
    assert sorted(recorded.values_list("data__to", flat=True)) == sorted(addresses)
    assert sorted(i for i, _ in announced) == sorted(e.public_id for e in recorded)
    totals = metrics(api, alice_key)
    assert (totals["totalDelivered"], totals["totalBounced"]) == (
        (200, 0) if kind == "delivered" else (0, 200)
    )
    suppressed = Suppression.objects.filter(reason="hard_bounce")
    changes = SuppressionChange.objects.filter(action="added", reason="hard_bounce")
    if kind == "delivered":
        assert not suppressed.exists() and not changes.exists()
    else:
        by_event = {event.public_id: event.data["to"] for event in recorded}
        assert {s.source_event: s.address for s in suppressed} == by_event
        assert {c.source_event: c.address for c in changes} == by_event
        assert set(changes.values_list("actor", flat=True)) == {f"event {e}" for e in by_event}


def test_a_batch_larger_than_a_chunk_records_each_event_once(
    client, api, alice_key, esp, announced, django_capture_on_commit_callbacks
):
    esp("sendgrid")
    send_id, provider_id = send_mail(api, alice_key)
    at = moment()
    size = provider_events.CHUNK * 2 + 1
    delivered = [
        sendgrid_event(provider_id, at, "delivered", email=f"d{i}@example.com") for i in range(size)
    ]
    bounces = [hard_bounce(provider_id, at, f"b{i}@example.com") for i in range(20)]
    unknown = [
        sendgrid_event("no-such-message", at, "delivered", email=f"x{i}@example.com")
        for i in range(10)
    ]
    # Repeats within the batch: the same delivery, and a second hard bounce of one address.
    repeats = [delivered[0], hard_bounce(provider_id, at, "b0@example.com")]
    batch = delivered[:300] + bounces + unknown + delivered[300:] + repeats

    with django_capture_on_commit_callbacks(execute=True):
        assert post_json(client, "sendgrid/tracking/", batch).status_code == 200

    events = Event.objects.filter(send__public_id=send_id).exclude(type="email.sent")
    assert events.filter(type="email.delivered").count() == size
    assert events.filter(type="email.bounced").count() == 20
    assert len(announced) == size + 20
    assert {public_id for public_id, _ in announced} == set(
        events.values_list("public_id", flat=True)
    )
    totals = metrics(api, alice_key)
    assert (totals["totalDelivered"], totals["totalBounced"]) == (size, 20)
    assert Suppression.objects.count() == SuppressionChange.objects.count() == 20


def test_a_tracking_signal_outside_a_webhook_request_is_recorded_at_once(api, alice_key, esp):
    from anymail.signals import AnymailTrackingEvent, tracking

    esp("postmark")
    send_id, provider_id = send_mail(api, alice_key)
    event = AnymailTrackingEvent(
        event_type="delivered",
        message_id=provider_id,
        recipient="user@example.com",
        timestamp=moment(),
        mta_response="250 OK",
        esp_event={},
    )

    tracking.send(sender=object, event=event, esp_name="Postmark")

    [recorded] = provider_events_of(send_id)
    assert (recorded.type, recorded.data) == (
        "email.delivered",
        {"response": "250 OK", "smtpCode": 250, "to": "user@example.com"},
    )


def test_a_row_the_bulk_write_refuses_costs_only_itself(
    client, api, alice_key, esp, monkeypatch, caplog
):
    # A fault the real parts cannot be made to produce on demand: every value of a payload is
    # cleaned before it reaches SQL. Should a row still be refused, the others are recorded.
    from django.db import DataError
    from django.db.models import QuerySet

    esp("sendgrid")
    send_id, provider_id = send_mail(api, alice_key)
    bulk_create = QuerySet.bulk_create

    def refusing(self, objs, *args, **kwargs):
        if self.model is Event and any(e.data.get("to") == "odd@example.com" for e in objs):
            raise DataError("value refused")
        return bulk_create(self, objs, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "bulk_create", refusing)
    at = moment()
    batch = [
        sendgrid_event(provider_id, at, "delivered", email=address)
        for address in ("a@example.com", "odd@example.com", "b@example.com")
    ]

    with caplog.at_level(logging.WARNING, logger="fluxomail.provider_events"):
        assert post_json(client, "sendgrid/tracking/", batch).status_code == 200

    assert [e.data["to"] for e in provider_events_of(send_id)] == ["a@example.com", "b@example.com"]
    assert metrics(api, alice_key)["totalDelivered"] == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "fluxomail.provider_events"]
    assert lines == [
        "3 events not recorded together (DataError): one at a time",
        f"email.delivered event of {send_id} not recorded: DataError",
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_one_batch_record_each_event_once(
    api, alice_key, esp, announced, monkeypatch
):
    """The second post's INSERT waits on the first's uncommitted dedupe keys (PostgreSQL's
    unique index), then skips them: each event, counter and suppression once, each event
    announced once, after commit."""
    from django.db import connections
    from django.test import Client

    from sends import events

    esp("sendgrid")
    send_id, provider_id = send_mail(api, alice_key)
    announced.clear()  # the send's own email.sent
    at = moment()
    batch = [hard_bounce(provider_id, at, f"b{i}@example.com") for i in range(50)]
    batch += [
        sendgrid_event(provider_id, at, "delivered", email=f"d{i}@example.com") for i in range(50)
    ]

    add_counts = events._add_counts
    release = threading.Event()
    first = threading.Lock()

    def held(counts):
        add_counts(counts)
        if first.acquire(blocking=False):
            release.wait(30)  # keep the first transaction open until the other post waits

    monkeypatch.setattr(events, "_add_counts", held)
    answers = []

    def post():
        try:
            answers.append(post_json(Client(), "sendgrid/tracking/", batch).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    if not wait_for_a_lock_wait():
        pytest.fail("the second post never waited on the first")
    release.set()
    for thread in threads:
        thread.join(60)

    assert answers == [200, 200]
    recorded = provider_events_of(send_id)
    assert len(recorded) == 100
    assert sorted(announced) == sorted((event.public_id, False) for event in recorded)
    totals = metrics(api, alice_key)
    assert (totals["totalDelivered"], totals["totalBounced"]) == (50, 50)
    assert Suppression.objects.count() == SuppressionChange.objects.count() == 50
