"""Every 4xx of the send API: its status, code and exact body, and that nothing was sent."""

import base64
import json

import pytest
from django.core import mail

from accounts.models import Scope
from sends.models import IdempotencyRecord, Message, Send
from sends.serializers import SendEmailSerializer
from tests.problems import problem as expected_problem
from usage.models import UsageCounter, UsageRejection

SEND = "/api/v1/emails/send"

pytestmark = pytest.mark.django_db


def problem(response, status, code, message, details=None):
    return expected_problem(status, code, message, response["X-Request-Id"], details)


def assert_nothing_sent():
    assert Send.objects.count() == 0
    assert Message.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    assert mail.outbox == []
    assert sum(row.sends for row in UsageCounter.objects.all()) == 0


def send(api, key, body, **extra):
    return api.post(SEND, body, format="json", **key.bearer, **extra)


def field_errors(response) -> dict:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "validation_error"
    assert_nothing_sent()
    return body["details"]


# --- 401 / 403 ---------------------------------------------------------------------------------


def test_missing_key_is_401_with_www_authenticate(api, seed_body):
    response = api.post(SEND, seed_body, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == problem(response, 401, "invalid_key", "Invalid API key")
    assert_nothing_sent()
    assert UsageCounter.objects.count() == 0


def test_unknown_key_is_401(api, seed_body, send_key):
    # The last character changed (never to itself: a token may end in "x").
    last = "y" if send_key.token.endswith("x") else "x"
    response = api.post(
        SEND, seed_body, format="json", HTTP_AUTHORIZATION=f"Bearer {send_key.token[:-1]}{last}"
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_key"
    assert_nothing_sent()


def test_revoked_key_is_401(api, seed_body, send_key):
    send_key.key.revoke()

    response = send(api, send_key, seed_body)

    assert response.status_code == 401
    assert_nothing_sent()


def test_key_without_send_scope_is_403_missing_scope(api, seed_body, read_key):
    response = send(api, read_key, seed_body)

    assert response.status_code == 403
    assert response.json() == problem(
        response, 403, "missing_scope", "Forbidden: missing scope send_email"
    )
    assert_nothing_sent()
    rejection = UsageRejection.objects.get()
    assert (rejection.code, rejection.count) == ("missing_scope", 1)


def test_key_with_empty_scope_list_may_send(api, seed_body, empty_key):
    assert send(api, empty_key, seed_body).status_code == 200


def test_paused_organization_is_403_tenant_paused(api, seed_body, send_key):
    send_key.key.organization.pause()

    response = send(api, send_key, seed_body)

    assert response.status_code == 403
    assert response.json() == problem(
        response, 403, "tenant_paused", "Tenant paused for this organization"
    )
    assert_nothing_sent()


def test_scope_is_checked_before_the_body(api, read_key):
    response = api.post(SEND, "not json", content_type="text/plain", **read_key.bearer)

    assert response.status_code == 403


# --- 400 / 413 / 415: parsing ------------------------------------------------------------------


def test_malformed_json_is_400(api, send_key):
    response = api.post(SEND, '{"to": ', content_type="application/json", **send_key.bearer)

    assert response.status_code == 400
    assert response.json() == problem(
        response,
        400,
        "validation_error",
        "Malformed JSON body",
        {"body": ["Malformed JSON body"]},
    )
    assert_nothing_sent()


def test_json_array_body_is_400(api, send_key):
    response = api.post(SEND, "[1, 2]", content_type="application/json", **send_key.bearer)

    assert field_errors(response) == {"body": ["Expected a JSON object."]}


def test_form_body_is_415(api, send_key):
    response = api.post(SEND, {"to": "user@example.com"}, **send_key.bearer)

    assert response.status_code == 415
    assert response.json() == problem(
        response, 415, "unsupported_media_type", "Content-Type must be application/json"
    )
    assert_nothing_sent()


def test_body_over_the_size_limit_is_413(api, send_key, seed_body, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    seed_body["content"] = "x" * 2000

    response = send(api, send_key, seed_body)

    assert response.status_code == 413
    assert response.json() == problem(response, 413, "payload_too_large", "Request body too large")
    assert_nothing_sent()


def raw_send(client, key, payload: bytes, content_type="application/json", **extra):
    """The body exactly as given (the test client would re-encode a str)."""
    return client.generic("POST", SEND, payload, content_type=content_type, **key.bearer, **extra)


def body_error(response, message: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json() == problem(
        response, 400, "validation_error", message, {"body": [message]}
    )
    assert_nothing_sent()


@pytest.mark.parametrize("charset", ["bogus", "iso-8859-1", "utf-16"])
def test_a_charset_other_than_utf_8_is_415(client, send_key, seed_body, charset):
    response = raw_send(
        client,
        send_key,
        json.dumps(seed_body).encode(),
        content_type=f"application/json; charset={charset}",
    )

    assert response.status_code == 415
    assert response.json() == problem(
        response,
        415,
        "unsupported_media_type",
        "Unsupported charset: JSON bodies must be UTF-8 "
        "(Content-Type: application/json; charset=utf-8, or no charset)",
    )
    assert_nothing_sent()


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
def test_charset_utf_8_is_accepted(client, send_key, seed_body, charset):
    seed_body["subject"] = "Grüße"
    response = raw_send(
        client,
        send_key,
        json.dumps(seed_body, ensure_ascii=False).encode(),
        content_type=f"application/json; charset={charset}",
    )

    assert response.status_code == 200
    assert mail.outbox[0].subject == "Grüße"


def test_a_body_that_is_not_utf_8_is_400(client, send_key, seed_body):
    payload = json.dumps(seed_body).encode().replace(b"Hello", b"Hel\xe9lo")

    body_error(raw_send(client, send_key, payload), "The body is not valid UTF-8.")


def test_chunked_body_behind_a_server_that_does_not_end_the_stream_is_411(
    client, send_key, seed_body
):
    # Django's test client, like runserver, does not set wsgi.input_terminated: reading the
    # stream to its end could block. gunicorn is tested in test_chunked_body.py.
    response = raw_send(
        client,
        send_key,
        json.dumps(seed_body).encode(),
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert response.status_code == 411
    assert response.json() == problem(
        response, 411, "length_required", "A request body needs a Content-Length header"
    )
    assert_nothing_sent()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"metadata":' + b"[" * 100_000,
        b'{"to": "user@example.com", "subject": "Hi", "content": "Hi", "metadata": {"k": '
        + b"[" * 5_000
        + b"]" * 5_000
        + b"}}",
    ],
    ids=["unclosed", "inside-a-valid-body"],
)
def test_deeply_nested_json_is_400(client, send_key, payload):
    body_error(
        raw_send(client, send_key, payload),
        "The JSON body is nested too deeply (at most 32 levels).",
    )


@pytest.mark.parametrize(
    "payload",
    [
        b'{"attachments": [' + b",".join([b"{}"] * 100_000) + b"]}",
        b"{" + b",".join(b'"f%d": 0' % i for i in range(300_000)) + b"}",
        b'{"cc": [' + b",".join([b'""'] * 100_000) + b"]}",
    ],
    ids=["100k-attachments", "300k-unknown-fields", "100k-strings"],
)
def test_a_body_of_more_than_1000_values_is_400_before_it_is_parsed(client, send_key, payload):
    body_error(
        raw_send(client, send_key, payload),
        "The JSON body has too many values (at most 1000).",
    )


def test_brackets_and_quotes_inside_strings_are_text(api, send_key, seed_body):
    seed_body["content"] = '[[[{{{"\\"' * 400 + "," * 2000

    assert send(api, send_key, seed_body).status_code == 200
    assert mail.outbox[0].body == seed_body["content"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Hi \ud800"),
        ("to", "\udc00 Name <user@example.com>"),
        ("metadata", {"key\ud800": "v"}),
        ("metadata", {"k": "\udfff"}),
    ],
)
def test_a_lone_surrogate_is_400_naming_the_field(client, send_key, seed_body, field, value):
    seed_body[field] = value
    payload = json.dumps(seed_body).encode()  # the surrogate as the escape \ud800

    response = raw_send(client, send_key, payload, HTTP_IDEMPOTENCY_KEY="surrogate")

    assert field_errors(response) == {
        field: ["Must not contain unpaired surrogates (\\ud800 to \\udfff)."]
    }


def test_a_lone_surrogate_in_a_field_name_is_400_naming_the_body(client, send_key, seed_body):
    seed_body["x\ud800"] = "y"
    payload = json.dumps(seed_body).encode()

    response = raw_send(client, send_key, payload, HTTP_IDEMPOTENCY_KEY="surrogate")

    assert field_errors(response) == {
        "body": ["Must not contain unpaired surrogates (\\ud800 to \\udfff)."]
    }


def test_a_surrogate_pair_is_one_character_and_accepted(client, send_key, seed_body):
    payload = json.dumps(seed_body).replace("Hello", "Hello \\ud83d\\ude00").encode()

    response = raw_send(client, send_key, payload, HTTP_IDEMPOTENCY_KEY="emoji")

    assert response.status_code == 200
    assert mail.outbox[0].subject == "Hello \U0001f600"


# --- 400: one test per rule --------------------------------------------------------------------


def test_missing_fields_are_all_named(api, send_key):
    response = send(api, send_key, {})

    assert response.json()["message"] == "Missing required fields: content, subject, to"
    assert field_errors(response) == {
        "to": ["This field is required."],
        "subject": ["This field is required."],
        "content": ["This field is required."],
    }


def test_missing_required_field_is_named(api, send_key, seed_body):
    del seed_body["subject"]

    assert field_errors(send(api, send_key, seed_body)) == {"subject": ["This field is required."]}


def test_wrong_type_is_400(api, send_key, seed_body):
    seed_body["subject"] = {"text": "Hello"}

    assert field_errors(send(api, send_key, seed_body)) == {"subject": ["Not a valid string."]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", 5),
        ("content", 123),
        ("htmlContent", 42),
        ("to", 7),
        ("fromName", 7),
        ("policyKey", 1),
        ("replyTo", 3.5),
        ("headers", {"X-A": 1}),
        ("metadata", {"k": 5}),
    ],
)
def test_number_where_a_string_is_required_is_400(api, send_key, seed_body, field, value):
    seed_body[field] = value

    errors = field_errors(send(api, send_key, seed_body))
    assert list(errors) == [f"{field}.{next(iter(value))}" if isinstance(value, dict) else field]
    assert list(errors.values()) == [["Not a valid string."]]
    assert Send.objects.count() == 0


def test_null_value_is_400(api, send_key, seed_body):
    seed_body["content"] = None

    assert field_errors(send(api, send_key, seed_body)) == {
        "content": ["This field may not be null."]
    }


@pytest.mark.parametrize(
    "address",
    ["not-an-address", "user@", "user@example.com, other@example.com", "User <user@>", "a b@c.de"],
)
def test_invalid_to_address_is_400(api, send_key, seed_body, address):
    seed_body["to"] = address

    errors = field_errors(send(api, send_key, seed_body))

    assert list(errors) == ["to"]


def test_display_name_in_to_is_accepted(api, send_key, seed_body):
    seed_body["to"] = "Üser Example <user@example.com>"

    response = send(api, send_key, seed_body)

    assert response.status_code == 200
    assert mail.outbox[0].to == ["=?utf-8?q?=C3=9Cser_Example?= <user@example.com>"]


def test_line_break_in_subject_is_400(api, send_key, seed_body):
    seed_body["subject"] = "Hello\r\nBcc: victim@example.com"

    assert field_errors(send(api, send_key, seed_body)) == {
        "subject": ["Must not contain line breaks or other control characters."]
    }


def test_line_break_in_to_is_400(api, send_key, seed_body):
    seed_body["to"] = "user@example.com\nBcc: victim@example.com"

    assert field_errors(send(api, send_key, seed_body)) == {
        "to": ["Must not contain line breaks or other control characters."]
    }


def test_line_break_in_from_name_is_400(api, send_key, seed_body):
    seed_body["fromName"] = "Acme\rBcc: x@example.com"

    assert list(field_errors(send(api, send_key, seed_body))) == ["fromName"]


def test_line_break_in_custom_header_value_is_400(api, send_key, seed_body):
    seed_body["headers"] = {"X-Campaign": "a\r\nBcc: x@example.com"}

    assert field_errors(send(api, send_key, seed_body)) == {
        "headers": [
            "'X-Campaign': values must not contain line breaks or other control characters."
        ]
    }


CONTROL_CHARACTERS = ["\x00", "\x07", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x85", "\x9b"]
CONTROL_CHARACTERS += ["\u2028", "\u2029"]
CONTROL = "Must not contain line breaks or other control characters."


def _with_control(field: str, char: str) -> dict:
    """A body whose `field` carries `char` in the middle of an otherwise valid value."""
    return {
        "to": {"to": f"Us{char}er <user@example.com>"},
        "cc": {"cc": [f"cc{char}x@example.com"]},
        "bcc": {"bcc": f"Bcc{char} <bcc@example.com>"},
        "replyTo": {"replyTo": f"reply{char}@example.com"},
        "fromEmail": {"fromEmail": f"Billing{char} <billing@acme.test>"},
        "fromName": {"fromName": f"Acme{char}Billing"},
        "subject": {"subject": f"Hello{char}there"},
    }[field]


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    "field", ["to", "cc", "bcc", "replyTo", "fromEmail", "fromName", "subject"]
)
def test_control_character_in_a_header_field_is_400_naming_the_field(
    api, send_key, seed_body, field, char
):
    seed_body.update(_with_control(field, char))

    errors = field_errors(send(api, send_key, seed_body))

    name = "cc[0]" if field == "cc" else field  # list items are named by position
    assert list(errors) == [name]
    if char != "\x00":  # DRF's own check answers first for NUL ("Null characters...").
        assert errors[name] == [CONTROL]


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
def test_control_character_in_a_custom_header_value_is_400(api, send_key, seed_body, char):
    seed_body["headers"] = {"X-Campaign": f"spring{char}sale"}

    assert field_errors(send(api, send_key, seed_body)) == {
        "headers": [
            "'X-Campaign': values must not contain line breaks or other control characters."
        ]
    }


@pytest.mark.parametrize("char", ["\x0b", "\x1c", "\x85", "\x9f", "\u2029"])
def test_control_character_in_an_attachment_filename_is_400(api, send_key, seed_body, char):
    seed_body["attachments"] = [_attachment(name=f"report{char}.txt")]

    assert field_errors(send(api, send_key, seed_body)) == {
        "attachments[0].filename": ["Must not contain path separators or control characters."]
    }


def test_tab_in_the_subject_is_accepted(api, send_key, seed_body):
    seed_body["subject"] = "Hello\tthere"

    assert send(api, send_key, seed_body).status_code == 200
    assert mail.outbox[0].subject == "Hello\tthere"


def test_trailing_newline_in_a_custom_header_name_is_400(api, send_key, seed_body):
    seed_body["headers"] = {"X-Campaign\n": "spring"}

    assert list(field_errors(send(api, send_key, seed_body))) == ["headers"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("to", "jörg@example.com"),
        ("cc", ["Zoë <zoë@example.com>"]),
        ("replyTo", "ünsubscribe@bücher.example"),
    ],
)
def test_non_ascii_local_part_is_400_naming_the_field(api, send_key, seed_body, field, value):
    seed_body[field] = value
    message = (
        "The part before the @ must be ASCII: internationalised mailbox names (SMTPUTF8) are "
        "not supported."
    )

    errors = field_errors(send(api, send_key, seed_body))

    assert errors == {("cc[0]" if field == "cc" else field): [message]}


@pytest.mark.parametrize("domain", ["xn--a.example", "ex\ufffdample.com", "a" * 64 + "ü.com"])
def test_undecodable_domain_is_400(api, send_key, seed_body, domain):
    seed_body["to"] = f"user@{domain}"

    assert field_errors(send(api, send_key, seed_body)) == {
        "to": ["The domain is not a valid internationalised domain name."]
    }


@pytest.mark.parametrize(
    "domain",
    [
        "💩.la",  # emoji: IDNA 2003 encoded it (xn--ls8h.la), IDNA 2008 disallows it
        "xn--ls8h.la",  # the same as an A-label
        "a\u200cb.example",  # a joiner outside the scripts that need it: IDNA 2003 dropped it
        "a\u200db.example",
    ],
)
def test_domain_that_idna_2008_refuses_is_400(api, send_key, seed_body, domain):
    seed_body["cc"] = [f"user@{domain}"]

    assert field_errors(send(api, send_key, seed_body)) == {
        "cc[0]": ["The domain is not a valid internationalised domain name."]
    }


def test_empty_subject_is_400(api, send_key, seed_body):
    seed_body["subject"] = ""

    assert field_errors(send(api, send_key, seed_body)) == {
        "subject": ["This field may not be blank."]
    }


def test_subject_over_998_characters_is_400(api, send_key, seed_body):
    seed_body["subject"] = "x" * 999

    assert list(field_errors(send(api, send_key, seed_body))) == ["subject"]


def test_unknown_field_is_400_with_the_other_errors(api, send_key, seed_body):
    seed_body["template"] = "welcome"
    seed_body["To"] = "x@example.com"
    del seed_body["content"]

    assert field_errors(send(api, send_key, seed_body)) == {
        "content": ["This field is required."],
        "template": ["Unknown field."],
        "To": ["Unknown field."],
    }


def test_more_than_50_recipients_is_400(api, send_key, seed_body):
    seed_body["cc"] = [f"cc{i}@example.com" for i in range(25)]
    seed_body["bcc"] = [f"bcc{i}@example.com" for i in range(25)]

    errors = field_errors(send(api, send_key, seed_body))

    assert set(errors) == {"cc", "bcc"}


def test_cc_as_a_string_and_bcc_as_a_list_are_accepted(api, send_key, seed_body):
    seed_body["cc"] = "Carol <cc@example.com>"
    seed_body["bcc"] = ["bcc@example.com"]

    response = send(api, send_key, seed_body)

    assert response.status_code == 200
    assert mail.outbox[0].cc == ["Carol <cc@example.com>"]
    assert mail.outbox[0].bcc == ["bcc@example.com"]


def test_invalid_cc_address_is_named_by_position(api, send_key, seed_body):
    seed_body["cc"] = ["ok@example.com", "nope"]

    assert field_errors(send(api, send_key, seed_body)) == {
        "cc[1]": ["Enter a valid email address."]
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("attachments", [{}] * 6, "Ensure this field has no more than 5 elements."),
        ("headers", {f"X-H{i}": i for i in range(21)}, "At most 20 headers."),
        ("metadata", {f"k{i}": "v" * 501 for i in range(11)}, "At most 10 keys."),
        ("cc", list(range(51)), "At most 50 recipients in to, cc and bcc together."),
    ],
    ids=["attachments", "headers", "metadata", "cc"],
)
def test_a_list_or_object_over_its_limit_is_refused_before_its_items_are_read(
    api, send_key, seed_body, field, value, message
):
    seed_body[field] = value

    assert field_errors(send(api, send_key, seed_body)) == {field: [message]}


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("to", "Enter a valid email address."),
        ("cc", "Enter a valid email address."),
        ("replyTo", "Enter a valid email address."),
    ],
)
def test_deeply_nested_comments_in_an_address_are_400(api, send_key, seed_body, field, message):
    # email.utils parses each nested comment recursively: 480 of them overflow the stack.
    seed_body[field] = "(" * 480 + "user@example.com"

    assert field_errors(send(api, send_key, seed_body)) == {field: [message]}


def test_an_address_over_500_characters_is_400_before_it_is_parsed(api, send_key, seed_body):
    seed_body["bcc"] = ["ok@example.com", "a" * 490 + "@example.com"]

    assert field_errors(send(api, send_key, seed_body)) == {
        "bcc[1]": ["Ensure this field has no more than 500 characters."]
    }


def _attachment(data: bytes = b"hello", name: str = "a.txt") -> dict:
    return {"filename": name, "contentBase64": base64.b64encode(data).decode()}


def test_bad_base64_attachment_is_400(api, send_key, seed_body):
    seed_body["attachments"] = [{"filename": "a.txt", "contentBase64": "not base64!"}]

    assert field_errors(send(api, send_key, seed_body)) == {
        "attachments[0].contentBase64": ["Must be valid base64."]
    }


def test_more_than_five_attachments_is_400(api, send_key, seed_body):
    seed_body["attachments"] = [_attachment(name=f"{i}.txt") for i in range(6)]

    assert field_errors(send(api, send_key, seed_body)) == {
        "attachments": ["Ensure this field has no more than 5 elements."]
    }


def test_attachments_over_the_size_limit_are_400(api, send_key, seed_body, settings):
    settings.SEND_MAX_ATTACHMENT_BYTES = 1000
    seed_body["attachments"] = [_attachment(b"x" * 600, "a.bin"), _attachment(b"y" * 600, "b.bin")]

    assert field_errors(send(api, send_key, seed_body)) == {
        "attachments": ["At most 1000 bytes decoded in all."]
    }


@pytest.mark.parametrize("name", ["../etc/passwd", "a\\b.txt", "bad\x07name.txt"])
def test_attachment_filename_with_path_or_control_characters_is_400(api, send_key, seed_body, name):
    seed_body["attachments"] = [_attachment(name=name)]

    assert field_errors(send(api, send_key, seed_body)) == {
        "attachments[0].filename": ["Must not contain path separators or control characters."]
    }


def test_content_over_the_size_limit_is_400(api, send_key, seed_body, settings):
    settings.SEND_MAX_CONTENT_BYTES = 100
    seed_body["htmlContent"] = "<p>" + "é" * 60 + "</p>"

    assert field_errors(send(api, send_key, seed_body)) == {
        "htmlContent": ["Must be at most 100 bytes."]
    }


def test_unknown_policy_is_400(api, send_key, seed_body):
    seed_body["policyKey"] = "marketing"

    assert field_errors(send(api, send_key, seed_body)) == {
        "policyKey": ["Unknown policy 'marketing'."]
    }


def test_another_organizations_policy_is_unknown(api, send_key, charlie_key, seed_body):
    from sends.models import Policy

    Policy.objects.create(organization=charlie_key.key.organization, key="globex-only")
    seed_body["policyKey"] = "globex-only"

    assert list(field_errors(send(api, send_key, seed_body))) == ["policyKey"]


def test_bulk_policy_is_accepted(api, send_key, seed_body):
    seed_body["policyKey"] = "bulk"

    response = send(api, send_key, seed_body)

    assert response.status_code == 200
    assert Send.objects.get().policy_key == "bulk"


def test_from_email_outside_the_identity_domain_is_400(api, send_key, seed_body):
    seed_body["fromEmail"] = "ceo@evil.test"

    assert field_errors(send(api, send_key, seed_body)) == {
        "fromEmail": ["Must be an address on acme.test."]
    }


def test_from_email_on_the_default_domain_without_an_identity_is_400(
    api, send_key, seed_body, acme
):
    acme.from_name, acme.from_email = "", ""
    acme.save()
    seed_body["fromEmail"] = "security@fluxomail.local"

    assert field_errors(send(api, send_key, seed_body)) == {
        "fromEmail": [
            "Without a sending identity only the default address no-reply@fluxomail.local "
            "may be used."
        ]
    }


def test_the_exact_default_address_without_an_identity_is_accepted(api, send_key, seed_body, acme):
    acme.from_name, acme.from_email = "", ""
    acme.save()
    seed_body.update(fromEmail="No-Reply@Fluxomail.local", fromName="Acme")

    assert send(api, send_key, seed_body).status_code == 200
    assert mail.outbox[0].from_email == "Acme <no-reply@fluxomail.local>"


def test_from_email_and_name_on_the_identity_domain_are_used(api, send_key, seed_body):
    seed_body["fromEmail"] = "billing@acme.test"
    seed_body["fromName"] = "Acme Billing"

    assert send(api, send_key, seed_body).status_code == 200
    assert mail.outbox[0].from_email == "Acme Billing <billing@acme.test>"


def test_reply_to_must_be_one_address(api, send_key, seed_body):
    seed_body["replyTo"] = "a@example.com, b@example.com"

    assert field_errors(send(api, send_key, seed_body)) == {
        "replyTo": ["Enter exactly one email address."]
    }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Subject": "x"}, "'Subject': header names must start with X- or List-."),
        ({"Feedback-ID": "x"}, "'Feedback-ID': header names must start with X- or List-."),
        ({"List-Unsubscribe": "<x>"}, "'List-Unsubscribe': this header is set by the service."),
        ({"X Bad": "x"}, "'X Bad': header names must start with X- or List-."),
    ],
)
def test_custom_header_names_are_restricted(api, send_key, seed_body, headers, message):
    seed_body["headers"] = headers

    assert field_errors(send(api, send_key, seed_body)) == {"headers": [message]}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "a" * 5000},
        {"X-Big": "é" * 992},  # one over: "X-Big: " and 992 characters make 999
        {"X-" + "h" * 997: "v"},
    ],
)
def test_a_header_line_over_998_characters_is_400(api, send_key, seed_body, headers):
    seed_body["headers"] = headers
    (name,) = headers

    assert field_errors(send(api, send_key, seed_body)) == {
        "headers": [
            f"{name!r}: the header line (name, colon, space and value) must be at most 998 "
            "characters (RFC 5322)."
        ]
    }


@pytest.mark.parametrize("attachment", [{"contentType": "message/rfc822"}, {"filename": "a.eml"}])
def test_a_message_attachment_with_a_line_over_998_bytes_is_400(
    api, send_key, seed_body, attachment
):
    message = b"Subject: hi\r\n\r\n" + b"x" * 999 + b"\r\n"
    seed_body["attachments"] = [{**_attachment(message, name="a.txt"), **attachment}]

    assert field_errors(send(api, send_key, seed_body)) == {
        "attachments[0].contentBase64": [
            "A message/rfc822 attachment is sent as written (RFC 2046 allows no base64 for it): "
            "each of its lines must be at most 998 bytes."
        ]
    }


def test_more_than_20_headers_is_400(api, send_key, seed_body):
    seed_body["headers"] = {f"X-H{i}": "v" for i in range(21)}

    assert field_errors(send(api, send_key, seed_body)) == {"headers": ["At most 20 headers."]}


def test_metadata_limits_are_enforced(api, send_key, seed_body):
    seed_body["metadata"] = {f"k{i}": "v" for i in range(11)}

    assert field_errors(send(api, send_key, seed_body)) == {"metadata": ["At most 10 keys."]}


def test_metadata_key_too_long_is_400(api, send_key, seed_body):
    seed_body["metadata"] = {"k" * 41: "v"}

    assert field_errors(send(api, send_key, seed_body)) == {
        "metadata": ["Keys must be 1 to 40 characters."]
    }


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1f", "\x7f", "\x85", "\u2028"])
def test_control_character_in_a_metadata_key_is_400(api, send_key, seed_body, char):
    seed_body["metadata"] = {f"order{char}Id": "42"}

    assert field_errors(send(api, send_key, seed_body)) == {
        "metadata": ["Keys must not contain control characters."]
    }


@pytest.mark.postgres
def test_nul_in_a_metadata_key_is_400_before_the_jsonb_column_sees_it(api, send_key, seed_body):
    seed_body["metadata"] = {"a\x00b": "v"}

    response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="nul")

    assert field_errors(response) == {"metadata": ["Keys must not contain control characters."]}


def test_metadata_is_stored_on_the_send(api, send_key, seed_body):
    seed_body["metadata"] = {"orderId": "42"}

    assert send(api, send_key, seed_body).status_code == 200
    assert Send.objects.get().metadata == {"orderId": "42"}


# --- 400 at the idempotency step ---------------------------------------------------------------


def test_header_and_body_idempotency_keys_that_differ_are_400(api, send_key, seed_body):
    seed_body["idempotencyKey"] = "body-key"

    response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="header-key")

    assert response.json()["message"] == (
        "The Idempotency-Key header and the idempotencyKey field differ"
    )
    assert field_errors(response) == {
        "Idempotency-Key": ["Differs from the idempotencyKey field."],
        "idempotencyKey": ["Differs from the Idempotency-Key header."],
    }


def test_idempotency_key_over_255_characters_is_400(api, send_key, seed_body):
    response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert field_errors(response) == {"Idempotency-Key": ["Must be 1 to 255 characters."]}


def test_idempotency_key_with_non_ascii_is_400(api, send_key, seed_body):
    seed_body["idempotencyKey"] = "clé"

    assert field_errors(send(api, send_key, seed_body)) == {
        "idempotencyKey": ["Must be printable ASCII characters only."]
    }


def test_a_400_does_not_use_up_the_idempotency_key(api, send_key, seed_body):
    bad = dict(seed_body, to="nope")
    assert send(api, send_key, bad, HTTP_IDEMPOTENCY_KEY="k1").status_code == 400

    response = send(api, send_key, seed_body, HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 200
    assert response.json()["reused"] is False


def test_rejections_are_counted_by_code(api, send_key, seed_body):
    send(api, send_key, {})
    send(api, send_key, {})

    counter = UsageCounter.objects.get()
    assert (counter.requests, counter.rejected, counter.sends) == (2, 2, 0)
    rejection = UsageRejection.objects.get()
    assert (rejection.code, rejection.count) == ("validation_error", 2)


def test_scopes_list_is_checked_for_other_scopes(api, make_key, alice, seed_body):
    key = make_key(alice.organization, scopes=[Scope.PREFERENCES_READ])

    assert send(api, key, seed_body).status_code == 403


def test_the_message_names_the_field_and_its_reason(api, send_key, seed_body):
    seed_body["to"] = "not an address"
    body = send(api, send_key, seed_body).json()

    assert (
        body["message"] == body["detail"] == body["error"] == ("to: Enter a valid email address.")
    )


def test_list_items_are_named_by_position_and_the_message_counts_the_rest(api, send_key, seed_body):
    seed_body.update(cc=["a@example.com", "not an address"], replyTo="nope", fromName="x" * 201)
    body = send(api, send_key, seed_body).json()

    assert list(body["details"])[0] == "cc[1]"
    assert set(body["details"]) == {"cc[1]", "replyTo", "fromName"}
    assert body["message"].startswith("cc[1]: ")
    assert body["message"].endswith(" (and 2 more fields)")


def test_an_address_longer_than_its_column_once_encoded_is_400_not_a_database_error(
    api, send_key, seed_body
):
    # 300 backslashes are 300 characters as written, 600 once quoted for the header.
    seed_body["to"] = "\\" * 300 + " <user@example.com>"

    response = send(api, send_key, seed_body)

    assert response.status_code == 400
    assert list(response.json()["details"]) == ["to"]
    assert "once encoded" in response.json()["details"]["to"][0]
    assert Send.objects.count() == 0


def test_each_body_is_checked_by_fields_of_its_own(acme):
    # The declared fields are copied per serializer (shallowly, for speed), never shared: a
    # field reads its serializer's context (the organization) through the serializer it is
    # bound to.
    first = SendEmailSerializer(data={}, context={"organization": acme})
    second = SendEmailSerializer(data={}, context={"organization": None})

    for name, field in first.fields.items():
        assert field is not second.fields[name]
        assert (field.parent, second.fields[name].parent) == (first, second)
        assert field.context == {"organization": acme}
    assert {field.parent for field in SendEmailSerializer._declared_fields.values()} == {None}
