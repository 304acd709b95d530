"""Delivery through a real SMTP server (aiosmtpd on 127.0.0.1): MIME, headers, envelope, faults."""

import base64
import email
from email import policy as email_policy

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.exceptions import ValidationError

from sends.delivery import PooledSMTPBackend
from sends.mime import Email
from sends.models import Event, IdempotencyRecord, Message, Send
from sends.serializers import AddressField
from tests.conftest import SmtpSink, free_port, use_smtp_server
from tests.problems import problem
from tests.servers import FaultySmtp
from usage.models import UsageCounter

SEND = "/api/v1/emails/send"
PDF = bytes(range(256)) * 4  # binary bytes, every value once per block

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_pool():
    PooledSMTPBackend.close_all()
    yield
    PooledSMTPBackend.close_all()


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


def parsed(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email_policy.default)


@pytest.fixture
def full_body(seed_body) -> dict:
    return dict(
        seed_body,
        to="Zoë Receiver <user@example.com>",
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        subject="Grüße — ça va ? ✓",
        content="Hallo Zoë, ünïcode text ✓",
        htmlContent=(
            "<html><head><style>p { color: #ff0000 }</style></head>"
            "<body><p>Grüße ✓</p></body></html>"
        ),
        replyTo="support@acme.test",
        headers={"X-Campaign": "welcome"},
        attachments=[
            {
                "filename": "report.pdf",
                "contentBase64": base64.b64encode(PDF).decode(),
                "contentType": "application/pdf",
            }
        ],
    )


def test_mail_reaches_the_smtp_server_with_its_mime_structure(
    api, send_key, full_body, smtp_server
):
    response = send(api, send_key, full_body)

    assert response.status_code == 200, response.json()["details"]
    answer = response.json()
    [envelope] = smtp_server.messages
    assert envelope.mail_from == "hello@acme.test"
    assert sorted(envelope.rcpt_tos) == ["cc@example.com", "hidden@example.com", "user@example.com"]

    message = parsed(envelope)
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    text, html = alternative.get_payload()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().rstrip("\n") == "Hallo Zoë, ünïcode text ✓"
    assert html.get_content_type() == "text/html"
    html_text = html.get_content()
    assert "Grüße ✓" in html_text
    assert '<p style="color:#f00">Grüße ✓</p>' in html_text  # premailer shortens the colour
    assert "<style" not in html_text
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_payload(decode=True) == PDF

    assert message["Subject"] == "Grüße — ça va ? ✓"
    assert message["From"] == "Acme <hello@acme.test>"
    assert message["To"] == "Zoë Receiver <user@example.com>"
    assert message["Cc"] == "cc@example.com"
    assert message["Reply-To"] == "support@acme.test"
    assert message["Bcc"] is None
    assert "hidden@example.com" not in envelope.content.decode("ascii", "replace")
    assert message["X-Campaign"] == "welcome"
    assert message["Message-ID"] == answer["messageId"]
    assert message["Message-ID"].endswith("@acme.test>")
    assert message["Feedback-ID"] == f"{answer['sendId']}:acme:transactional:fluxomail"

    attempt = Message.objects.get(send__public_id=answer["sendId"])
    assert attempt.provider == "smtp"
    assert attempt.provider_message_id == answer["messageId"]
    assert sorted(attempt.to) == sorted(envelope.rcpt_tos)
    assert attempt.error == ""


def test_a_send_keeps_each_attachments_name_type_as_sent_and_size_but_no_content(
    api, send_key, seed_body, smtp_server
):
    contents = [PDF, b"a,b,c", b"\xff\xfe not utf-8", b"\x00\x01"]
    seed_body["attachments"] = [
        {"filename": "report.pdf", "contentType": "application/pdf"},
        {"filename": "rows.csv"},  # type from the name
        {"filename": "notes.txt", "contentType": "text/plain"},  # not UTF-8: sent as bytes
        {"filename": "blob.unknownext"},
    ]
    for item, content in zip(seed_body["attachments"], contents, strict=True):
        item["contentBase64"] = base64.b64encode(content).decode()

    response = send(api, send_key, seed_body)

    assert response.status_code == 200, response.content
    recorded = Send.objects.get().attachments
    assert recorded == [
        {"filename": "report.pdf", "contentType": "application/pdf", "size": 1024},
        {"filename": "rows.csv", "contentType": "text/csv", "size": 5},
        {"filename": "notes.txt", "contentType": "application/octet-stream", "size": 12},
        {"filename": "blob.unknownext", "contentType": "application/octet-stream", "size": 2},
    ]
    # What the page says is what went out.
    parts = list(parsed(smtp_server.messages[0]).iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        (item["filename"], item["contentType"]) for item in recorded
    ]
    assert [len(p.get_payload(decode=True)) for p in parts] == [len(c) for c in contents]


def test_a_send_without_attachments_records_an_empty_list(api, send_key, seed_body, smtp_server):
    assert send(api, send_key, seed_body).status_code == 200

    assert Send.objects.get().attachments == []


def test_text_only_mail_is_a_single_text_part(api, send_key, seed_body, smtp_server):
    del seed_body["htmlContent"]

    assert send(api, send_key, seed_body).status_code == 200

    message = parsed(smtp_server.messages[0])
    assert message.get_content_type() == "text/plain"


def test_internationalised_domains_go_out_in_punycode(api, send_key, seed_body, smtp_server):
    seed_body.update(to="Zoë <user@bücher.example>", cc="cc@exämple.com")

    response = send(api, send_key, seed_body)

    assert response.status_code == 200, response.json()["details"]
    [envelope] = smtp_server.messages
    assert sorted(envelope.rcpt_tos) == ["cc@xn--exmple-cua.com", "user@xn--bcher-kva.example"]
    raw = envelope.content.decode("ascii")
    assert "To: =?utf-8?q?Zo=C3=AB?= <user@xn--bcher-kva.example>" in raw.splitlines()
    assert "Cc: cc@xn--exmple-cua.com" in raw.splitlines()
    sent = Send.objects.get()
    assert (sent.to, sent.cc, sent.status) == (
        "=?utf-8?q?Zo=C3=AB?= <user@xn--bcher-kva.example>",
        ["cc@xn--exmple-cua.com"],
        "sent",
    )


def test_domains_are_encoded_with_idna_2008_where_it_differs_from_idna_2003(
    api, send_key, seed_body, smtp_server, acme
):
    # IDNA 2003 (Python's codec) would send these to fass.de, xn--wxaikc6b.gr (ς as σ) and
    # xn--11b2ezc.example (the joiner dropped): other domains than the ones written.
    acme.from_email = "hello@faß.de"
    acme.save()
    seed_body.update(
        to="user@Faß.de",
        cc=["b@ςόλος.gr", "c@क्\u200dष.example", "d@xn--fa-hia.de"],
        fromEmail="news@faß.de",
    )

    response = send(api, send_key, seed_body)

    assert response.status_code == 200, response.json()["details"]
    [envelope] = smtp_server.messages
    assert envelope.mail_from == "news@xn--fa-hia.de"
    assert envelope.rcpt_tos == [
        "user@xn--fa-hia.de",
        "b@xn--wxaihc1c.gr",
        "c@xn--11b2ezcw70k.example",
        "d@xn--fa-hia.de",
    ]
    message = parsed(envelope)
    assert message["From"] == "Acme <news@xn--fa-hia.de>"
    assert message["To"] == "user@xn--fa-hia.de"
    assert message["Message-ID"].endswith("@xn--fa-hia.de>")
    assert Send.objects.get().to == "user@xn--fa-hia.de"


def _longest_address(name: str, index: int) -> str:
    """The longest `Name <addr>` the `to`/`cc` rules accept with `name` repeated: their 500
    characters apply to the address as normalised (quoted, escaped or encoded), so the
    validation itself says how long the name may be. The address is near its own limit."""
    address = f"{index:02d}{'l' * 62}@{('d' * 63 + '.') * 3}example"
    low, high = 0, 500
    while low < high:
        middle = (low + high + 1) // 2
        try:
            AddressField().run_validation(f"{(name * middle)[:middle]} <{address}>")
        except ValidationError:
            high = middle - 1
        else:
            low = middle
    assert low > 50
    return f"{(name * low)[:low]} <{address}>"


@pytest.mark.parametrize(
    "subject",
    [
        "a" * 998,  # no space to fold at
        "é" * 998,
        "😀" * 998,
        "a" * 997 + "é",
        "a\t" * 499,
    ],
)
def test_the_longest_fields_validation_accepts_go_out_in_lines_of_at_most_998_characters(
    api, send_key, seed_body, smtp_server, subject
):
    # Header lines of exactly 998 characters, ASCII and not; metadata is no header at all.
    headers = {f"X-Long-{n:02d}": "v" if n % 2 else "é" for n in range(18)}
    headers = {name: char * (998 - len(name) - 2) for name, char in headers.items()}
    headers["List-Archive"] = "<https://archive.example/" + "p" * 958 + ">"
    headers["X-" + "h" * 994] = ""
    eml = b"Subject: " + b"s" * 989 + b"\r\nX-A: b\r\n\r\n" + b"x" * 998 + b"\r\n"
    display_names = ["\\", "Zoë ", "a", "a.b", "é"]
    seed_body.update(
        subject=subject,
        to=_longest_address("\\", 0),
        cc=[_longest_address(display_names[n % 5], n) for n in range(1, 50)],
        replyTo=_longest_address("Ünïcödé ", 99),
        fromName="\\" * 200,
        headers=headers,
        content="line " * 2000,
        htmlContent=f'<p>{"word " * 2000}<a href="https://e.example/{"p" * 3000}">x</a></p>',
        attachments=[
            {"filename": "é" * 255, "contentBase64": base64.b64encode(PDF).decode()},
            {"filename": "😀" * 255, "contentBase64": base64.b64encode(b"x").decode()},
            {"filename": "a" * 251 + ".pdf", "contentBase64": base64.b64encode(b"x").decode()},
            {"filename": 'a"' * 127 + "a", "contentBase64": base64.b64encode(b"x").decode()},
            {"filename": "é" * 251 + ".eml", "contentBase64": base64.b64encode(eml).decode()},
        ],
        metadata={f"{n}{'k' * 39}": "m" * 500 for n in range(10)},
    )

    response = send(api, send_key, seed_body)

    assert response.status_code == 200, response.content
    [envelope] = smtp_server.messages
    assert max(len(line) for line in envelope.content.split(b"\r\n")) <= 998
    assert len(envelope.rcpt_tos) == 50
    message = parsed(envelope)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == seed_body["to"].partition(" <")[0]
    assert len(message["Cc"].addresses) == 49
    assert message["Reply-To"].addresses[0].display_name.startswith("Ünïcödé Ünïcödé")
    assert message["From"].addresses[0].display_name == "\\" * 200
    for name, value in headers.items():
        # A value too long for the header's first line starts on the next one (folding
        # whitespace, not part of the value; this parser keeps it).
        assert message[name].lstrip() == value, name
    filenames = [part.get_filename() for part in message.iter_attachments()]
    assert filenames == [item["filename"] for item in seed_body["attachments"]]
    assert message.get_payload()[1].get_payload(decode=True) == PDF


def test_the_smtp_connection_is_reused_across_sends(api, send_key, seed_body, smtp_server):
    for _ in range(3):
        assert send(api, send_key, seed_body).status_code == 200

    assert len(smtp_server.messages) == 3
    # One connection, checked back into the pool after every send.
    [pool] = PooledSMTPBackend._pools.values()
    assert len(pool) == 1


def test_a_closed_pooled_connection_is_replaced_once(api, send_key, seed_body, smtp_server):
    assert send(api, send_key, seed_body).status_code == 200
    [pool] = PooledSMTPBackend._pools.values()
    pool[0].sock.close()  # the server side went away between two sends

    response = send(api, send_key, seed_body)

    assert response.status_code == 200
    assert len(smtp_server.messages) == 2


@pytest.fixture
def own_smtp_server(smtp_server, settings):
    """A server this test may stop and restart on the same port (the fixture's stays up)."""
    sink = SmtpSink(free_port()).start()
    settings.EMAIL_PORT = sink.port
    return sink


def test_smtp_server_down_gives_500_naming_the_send_and_a_retry_delivers_on_it(
    api, send_key, seed_body, own_smtp_server
):
    own_smtp_server.stop()

    failed = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-7")

    assert failed.status_code == 500
    body = failed.json()
    send_id = body["sendId"]
    assert body == dict(
        problem(
            500,
            "internal_error",
            "Email delivery failed; retry with the same idempotency key",
            failed["X-Request-Id"],
        ),
        sendId=send_id,
    )
    assert failed["Idempotency-Key"] == "order-7"
    record = Send.objects.get(public_id=send_id)
    assert record.status == "failed"
    attempt = Message.objects.get(send=record)
    assert attempt.error.startswith("ConnectionRefusedError")
    assert IdempotencyRecord.objects.get(key="order-7").state == "failed"
    assert UsageCounter.objects.get().failures == 1

    restarted = SmtpSink(own_smtp_server.port).start()  # the mail server is back
    try:
        retried = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-7")
    finally:
        restarted.stop()

    assert retried.status_code == 200, retried.content
    assert retried.json()["sendId"] == send_id
    assert retried.json()["reused"] is False
    assert len(restarted.messages) == 1
    assert Send.objects.get(public_id=send_id).status == "sent"
    assert Message.objects.filter(send=record).count() == 2
    assert list(Event.objects.filter(send=record).values_list("type", flat=True)) == [
        "email.failed",
        "email.sent",
    ]
    replay = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-7")
    assert replay.json() == dict(retried.json(), reused=True)


def test_smtp_refusal_is_500_with_the_smtp_code_kept(api, send_key, seed_body, smtp_server):
    smtp_server.reply = "550 5.1.1 No such user"

    response = send(api, send_key, seed_body)

    assert response.status_code == 500
    attempt = Message.objects.get(send__public_id=response.json()["sendId"])
    assert attempt.error == "SMTPDataError: 550 5.1.1 No such user"
    assert Send.objects.get().status == "failed"


def test_backend_used_as_a_context_manager_sends_and_keeps_the_pool(smtp_server):
    from django.core.mail import EmailMessage, get_connection

    with get_connection() as connection:
        sent = connection.send_messages(
            [EmailMessage("Hi", "Body", "a@acme.test", ["b@example.com"]) for _ in range(2)]
        )

    assert sent == 2
    assert len(smtp_server.messages) == 2
    [pool] = PooledSMTPBackend._pools.values()
    assert len(pool) == 1


def test_smtp_server_that_never_answers_times_out_into_a_500(api, send_key, seed_body, settings):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection but never sends the SMTP greeting
    settings.EMAIL_BACKEND = "sends.delivery.PooledSMTPBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = silent.getsockname()[1]
    settings.EMAIL_TIMEOUT = 0.3
    try:
        response = send(api, send_key, seed_body)
    finally:
        silent.close()

    assert response.status_code == 500
    attempt = Message.objects.get(send__public_id=response.json()["sendId"])
    assert attempt.error == "SMTPServerDisconnected: Connection unexpectedly closed: timed out"
    assert Send.objects.get().status == "failed"


@pytest.fixture
def faulty_smtp(settings):
    """An SMTP server whose answers the test sets (tests/servers.py), with a 1 s client timeout."""
    with FaultySmtp() as sink:
        use_smtp_server(settings, sink.port, timeout=1)
        yield sink


UNCERTAIN = (
    "Email delivery outcome unknown: the mail server may have accepted the message, so it was "
    "not sent again; check before sending it anew"
)


def test_a_reply_to_data_lost_to_the_timeout_is_never_sent_again(
    api, send_key, seed_body, faulty_smtp
):
    assert send(api, send_key, seed_body).status_code == 200  # the pool holds a connection now
    # The server keeps the next message but answers its 250 only after the client gave up.
    faulty_smtp.mode = "late"

    response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-9")
    faulty_smtp.release()
    retry = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="order-9")

    assert response.status_code == 500, response.content
    body = response.json()
    send_id = body["sendId"]
    assert body == dict(
        problem(500, "internal_error", UNCERTAIN, response["X-Request-Id"]), sendId=send_id
    )
    assert len(faulty_smtp.messages) == 2  # the first send's and this one's, once
    uncertain = Send.objects.get(public_id=send_id)
    assert uncertain.status == "failed"
    [attempt] = uncertain.messages.all()
    assert attempt.error == (
        "SMTPServerDisconnected: Connection unexpectedly closed: timed out "
        "(after DATA: the server may have accepted the message)"
    )
    assert attempt.provider_message_id == ""
    assert list(uncertain.events.values_list("type", "data")) == [
        ("email.failed", {"reason": attempt.error})
    ]
    record = IdempotencyRecord.objects.get(key="order-9")
    assert (record.state, record.send_id, record.response_status) == (
        "completed",
        uncertain.pk,
        500,
    )
    # A retry with the key gets the same answer and sends nothing.
    assert retry.status_code == 500
    assert retry.json() == dict(body, requestId=retry["X-Request-Id"])
    assert retry["Idempotency-Replayed"] == "true"
    assert len(faulty_smtp.messages) == 2
    assert uncertain.messages.count() == 1


def _terminate_backend(pid: int) -> None:
    """pg_terminate_backend() from a connection of its own, waiting until the backend is gone
    (the server's thread may not use Django's connections: it runs an event loop)."""
    import psycopg2

    db = settings.DATABASES["default"]
    killer = psycopg2.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"],
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
    )
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
    finally:
        killer.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_database_connection_lost_after_delivery_still_names_the_send_in_the_500(
    api, send_key, seed_body, faulty_smtp
):
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    # The request's database connection dies while the SMTP server accepts the message.
    faulty_smtp.on_message = lambda: _terminate_backend(pid)

    response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="lost-db")
    connection.close()  # the test thread shares the request's (killed) connection

    assert response.status_code == 500, response.content
    body = response.json()
    stored = Send.objects.get()
    assert body["sendId"] == stored.public_id
    assert body["detail"] == UNCERTAIN
    [envelope] = faulty_smtp.messages
    message = parsed(envelope)
    assert message["Feedback-ID"].startswith(f"{stored.public_id}:")
    # Its bookkeeping died with the connection: the send stays pending, the key in progress.
    assert stored.status == "pending"
    assert not Message.objects.exists()
    assert IdempotencyRecord.objects.get().state == "in_progress"


def test_providers_have_short_names():
    from anymail.backends.postmark import EmailBackend as PostmarkBackend
    from django.core.mail.backends.console import EmailBackend as ConsoleBackend
    from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

    from sends.delivery import PooledSMTPBackend, provider_name

    assert provider_name(PooledSMTPBackend()) == "smtp"
    assert provider_name(ConsoleBackend()) == "console"
    assert provider_name(LocmemBackend()) == "locmem"
    assert provider_name(PostmarkBackend(server_token="t")) == "postmark"


@pytest.mark.parametrize(
    "subject",
    ["Hello", "Grüße — ça va ? ✓", "s" * 989, "tab\there", "two  spaces ", "=?utf-8?q?x?="],
)
def test_messages_are_written_byte_for_byte_as_with_djangos_policy(subject):
    # sends.mime writes the usual header line directly; every byte must be as compat32 (the
    # policy of Django's messages) writes it.
    message = Email(
        subject=subject,
        body="Hallo Zoë ✓\n" + "line " * 300,
        from_email='"Acme, Inc." <hello@acme.test>',
        to=["Zoë Receiver <user@example.com>", "a" * 60 + "@example.com"],
        cc=["cc@example.com"],
        reply_to=["support@acme.test"],
        headers={
            "Message-ID": "<1.2.3@acme.test>",
            "X-Campaign": "welcome; a=b, c",
            "X-Long": "v" * 200,
            "X-Spaces": "a    b",
            "X-Eight-Bit": "é" * 10,
        },
    )
    message.attach_alternative("<p>Grüße ✓</p>", "text/html")
    message.attach("é" * 30 + ".pdf", PDF, "application/pdf")
    mime = message.message()

    fast = mime.as_bytes(linesep="\r\n")  # sets the boundaries, which the second run keeps
    mime.policy = email_policy.compat32

    assert fast == mime.as_bytes(linesep="\r\n")
    assert b"\r\nX-Campaign: welcome; a=b, c\r\n" in fast


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "A.b+tag@Sub.Example.ORG",
        "o'neil@example.com",
        "#!$%&'*+-/=?^_`{}|~@example.org",
        '"a b"@example.com',
        "a..b@example.com",
        "Zoë Receiver <user@example.com>",
        '"Acme, Inc." <hello@acme.test>',
        "x@[1.2.3.4]",
        "u@" + "a" * 63 + ".com",
    ],
)
def test_the_envelope_has_the_addresses_djangos_smtp_backend_gives(address):
    from django.core.mail.message import sanitize_address

    from sends.delivery import envelope_address

    assert envelope_address(address, "utf-8") == sanitize_address(address, "utf-8")


def test_each_multipart_part_gets_a_boundary_that_no_content_holds(monkeypatch):
    import secrets

    taken = 10**18
    drawn = iter([taken, 1, 2])
    monkeypatch.setattr(secrets, "randbelow", lambda _: next(drawn))
    body = f"a line that holds the first boundary drawn: --{'=' * 15}{taken:019d}==\n"
    message = Email(subject="s", body=body, from_email="a@acme.test", to=["b@example.com"])
    message.attach_alternative("<p>html</p>", "text/html")
    message.attach("report.pdf", PDF, "application/pdf")

    mime = message.message()

    mixed, alternative = mime, mime.get_payload(0)
    assert mixed.get_boundary() == f"{'=' * 15}{1:019d}=="
    assert alternative.get_boundary() == f"{'=' * 15}{2:019d}=="
    back = email.message_from_bytes(mime.as_bytes(), policy=email_policy.default)
    assert back.get_body(("plain",)).get_content() == body
    assert back.get_body(("html",)).get_content() == "<p>html</p>"
    assert [part.get_filename() for part in back.iter_attachments()] == ["report.pdf"]


def test_a_message_attachment_leaves_its_boundary_to_the_generator():
    message = Email(subject="s", body="text", from_email="a@acme.test", to=["b@example.com"])
    message.attach("note.eml", "Subject: inner\n\nhello\n", "message/rfc822")

    mime = message.message()

    assert mime.get_boundary() is None
    assert b"Subject: inner" in mime.as_bytes(linesep="\r\n")


def test_the_message_is_written_as_the_stdlib_writes_it():
    # sends.mime.as_bytes writes each part's text in one piece: the bytes must not change.
    from sends.mime import Email, as_bytes

    long_line = "<p>" + "é x " * 600 + "</p>"  # over 998 characters: quoted-printable
    cases = [
        Email(subject="Hi", body="one\ntwo\n\nthree", from_email="a@b.test", to=["c@d.test"]),
        Email(
            subject="Ünïcode",
            body="From the start\r\n.dot\n",
            from_email="a@b.test",
            to=["Zoë <c@d.test>"],
            cc=["e@f.test"],
        ),  # fmt: skip
    ]
    html = Email(subject="H", body="text", from_email="a@b.test", to=["c@d.test"])
    html.attach_alternative(long_line + "\n<p>end</p>\n", "text/html")
    html.attach("r.csv", "a,b\n1,2\n", "text/csv")
    html.attach("x.bin", bytes(range(256)) * 4, "application/octet-stream")
    cases.append(html)
    for case in cases:
        message = case.message()
        assert as_bytes(message) == message.as_bytes(linesep="\r\n")


def test_quoted_printable_writes_what_the_stdlib_writes():
    # sends.mime.quoted_printable takes binascii's encoding where it is the stdlib's, which
    # Django's messages use: on random text built to differ (quoted characters and spaces
    # around the 76th column, "." and spaces at line ends, CR, LF and CRLF, bytes to quote),
    # the same characters; decoded, the text (the stdlib turns a CR into a line end); no line
    # over 76 characters.
    import binascii
    import random
    from email import quoprimime

    from sends import mime

    units = [
        b"a", b"Z", b"=", b"\xc3\xa9", b" ", b"\t", b".", b"\x00", b"\x7f", b"\n", b"\r\n",
        b"\r", b"\x0b", b"\x85", b"From ", b"\xff", b"<a href=\"x\">",
    ]  # fmt: skip
    rng = random.Random(15)
    cases = [
        rng.choices(units, [rng.random() for _ in units], k=rng.choice([1, 9, 80, 160, 400]))
        for _ in range(6000)
    ]
    cases = [b"".join(case) for case in cases]
    for column in range(70, 160):
        for end in [b"=", b"\xc3\xa9", b" ", b"\t", b".", b"a", b""]:
            for after in [b"", b"\n", b"\n.\n", b"b", b"bb\n"]:
                cases += [b"a" * column + end + after, b"=" * (column // 3) + end + after]
    fast = 0
    for data in cases:
        encoded = mime.quoted_printable(data)

        assert encoded == quoprimime.body_encode(data.decode("latin1")), data
        assert max(map(len, encoded.split("\n"))) <= 76
        if b"\r" not in data:
            assert binascii.a2b_qp(encoded) == data
            fast += mime._NOT_AS_THE_STDLIB.search(binascii.b2a_qp(data)) is None
    assert fast > len(cases) // 3  # binascii's encoding was taken, not only the stdlib's


def test_a_long_lined_html_part_is_djangos_with_binascii_encoding(monkeypatch):
    # A minified HTML (a line over 998 bytes) goes out quoted-printable, as Django writes it,
    # without the stdlib's encoder in Python.
    from email import quoprimime

    from django.core.mail import EmailMultiAlternatives

    from sends.mime import as_bytes

    html = (
        '<html><body style="margin:0">'
        + "<p>Grüße, <a href='https://e.example/?a=1&b=2'>x</a></p>" * 80
        + "</body></html>\n"
    )
    fields = dict(subject="s", body="text", from_email="a@b.test", to=["c@d.test"])
    django_message = EmailMultiAlternatives(**fields)
    django_message.attach_alternative(html, "text/html")
    expected = as_bytes(django_message.message().get_payload(1))
    ours = Email(**fields)
    ours.attach_alternative(html, "text/html")

    monkeypatch.setattr(quoprimime, "body_encode", None)  # not called
    part = ours.message().get_payload(1)

    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert as_bytes(part) == expected
    assert part.get_payload(decode=True).decode() == html


@pytest.mark.postgres
def test_a_sent_htmls_row_is_compressed_with_lz4_on_postgresql(api, send_key, seed_body):
    # sends 0011: lz4 costs the backend less CPU than pglz for a TOASTed HTML (README).
    html = "".join(f"<p>Paragraph {i}: the weekly picks, rendered.</p>" for i in range(400))
    response = send(api, send_key, dict(seed_body, htmlContent=html))
    assert response.status_code == 200
    message = Message.objects.get(send__public_id=response.json()["sendId"])

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(html), octet_length(html) > pg_column_size(html)"
            " FROM sends_message WHERE id = %s",
            [message.id],
        )
        assert cursor.fetchone() == ("lz4", True)
    assert html in Message.objects.get(id=message.id).html
