"""sends.mime's direct writer: the bytes of as_bytes(Email.message()), or nothing (message()
writes the message), compared on generated messages inside its shape and just outside it."""

import random
import re
import secrets

import django.core.mail.message as django_message
import pytest
from django.core.mail import EmailMultiAlternatives

from sends import mime
from sends.mime import Email, as_bytes, message_bytes

DATE = "Thu, 03 Dec 2026 09:36:42 -0000"
MSGID = "<178.1.2@host.example>"
DATE_FORM = re.compile(
    rb"\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
)
BOUNDARY_FORM = re.compile(rb'boundary="(={15}\d{19}==)"')


class _Draws:
    """secrets.randbelow, the same numbers again after each reset: both writers draw the
    same boundaries."""

    def __init__(self):
        self.reset([])

    def reset(self, first: list[int]):
        self.values = iter([*first, *range(10**17, 10**17 + 100)])

    def __call__(self, _bound):
        return next(self.values)


@pytest.fixture
def fixed(monkeypatch):
    draws = _Draws()
    monkeypatch.setattr(secrets, "randbelow", draws)
    for module in (mime, django_message):
        monkeypatch.setattr(module, "formatdate", lambda localtime=False: DATE)
        monkeypatch.setattr(module, "make_msgid", lambda domain=None: MSGID)
    return draws


# --- the generator -------------------------------------------------------------------------
# Each choice is made inside the writer's shape or, now and then, just outside it; `outside`
# names what took it out. A header line is in the shape when `Name: value` is ASCII,
# printable and at most 78 characters (compat32 writes longer ones folded).

ASCII_WORDS = ["Hello", "your", "order", "#1234", "is", "ready", "=?utf-8?q?x?=", "a,b", "(c)"]
NAMES = ["Acme", "Acme, Inc.", 'The "Best" Shop', "O'Neil", "Zoë Käufer", "a" * 50, "x;y"]
DOMAINS = ["example.com", "acme.test", "xn--bcher-kva.de", "bücher.de", "sub.example.org"]


def fits(name: str, value: str) -> bool:
    return len(name) + 2 + len(value) <= 78 and value.isascii() and value.isprintable()


def address(rng: random.Random) -> str:
    from email.utils import formataddr

    if rng.random() < 0.75:  # the usual
        return rng.choice(["user@example.com", "Acme <hello@acme.test>", "a.b+tag@example.org"])
    local = rng.choice(["user", "a.b+tag", "o'neil", "x" * rng.randint(1, 40), "zoë"])
    addr = f"{local}@{rng.choice(DOMAINS)}"
    if rng.random() < 0.5:
        return addr
    if not addr.isascii():  # as a client may write it; Django encodes it
        return f"{rng.choice(['Zoë Käufer', 'Acme'])} <{addr}>"
    return formataddr((rng.choice(NAMES), addr))  # quoted, escaped or an encoded word


def subject(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.7:
        return " ".join(rng.choice(ASCII_WORDS) for _ in range(rng.randint(1, 5)))
    if shape < 0.85:  # around the fold: 'Subject: ' + 69 characters is 78
        words = []
        target = rng.randint(60, 80)
        while len(" ".join(words)) < target:
            words.append(rng.choice(ASCII_WORDS))
        return " ".join(words)[:target].strip() or "x"
    return rng.choice(
        [
            "",
            " leading",
            "trailing ",
            "two  spaces inside",
            "tab\there",
            "Grüße ✓",
            "s" * 69,
            "s" * 70,
            "s" * 77,
            "x" * 300,
        ]
    )


def text(rng: random.Random, kind: str) -> str:
    shape = rng.random()
    if shape < 0.1:
        return ""
    if shape < 0.45:
        return rng.choice(["Hi there", "<p>Hi there</p>", "a\nb\n", "one\r\ntwo\r\n"])
    pieces = []
    for _ in range(rng.randint(1, 12)):
        pieces.append(
            rng.choice(
                [
                    "plain words ",
                    "é ü ✓ 😀 ",
                    "\n",
                    "\r\n",
                    "\r",
                    "\n\n",
                    "From the start\n",
                    ".dot line\n",
                    "=3D and = signs ",
                    "trailing space \n",
                    "\x0b\x0c\x1c\x85\u2028",  # str.splitlines() breaks, not the generator's
                    "\t tabbed\t\n",
                    "x" * rng.choice([997, 998, 999, 1200]),  # 998: still 7bit
                    "é" * rng.choice([499, 500]),  # 998 and 1,000 bytes
                    "--===============" + f"{10**17:019d}==\n",  # the first boundary drawn
                    f"<a href='https://example.com/{kind}'>link</a>",
                ]
            )
        )
    return "".join(pieces)


def generated(rng: random.Random) -> tuple[EmailMultiAlternatives, list[str]]:
    outside = []
    subj = subject(rng)
    if not fits("Subject", subj) or subj[:1] == " " or subj[-1:] == " ":
        outside.append("subject")
    from_email = address(rng)
    lists = {}
    for field, name in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
        counts = [1] * 8 + [2, 9] if field == "to" else [0] * 6 + [1, 1, 2, 12]
        count = rng.choice(counts)
        lists[field] = [address(rng) for _ in range(count)]
        if lists[field] and not fits(name, ", ".join(lists[field])):
            outside.append(name)
    if not fits("From", from_email):
        outside.append("From")
    headers = {}
    if rng.random() < 0.9:
        headers[rng.choice(["Message-ID", "Message-Id"])] = MSGID
    headers["Feedback-ID"] = "snd_abc:acme:default:fluxomail"
    for index in range(rng.choice([0, 0, 1, 3])):
        name = f"X-Custom-{index}"
        value = rng.choice(["v", "welcome; a=b, c", "a    b", "v" * rng.randint(50, 70), "é"])
        headers[name] = value
        if not fits(name, value):
            outside.append(name)
    if rng.random() < 0.1:
        headers["List-Unsubscribe"] = "<https://example.com/u/abc>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if rng.random() < 0.03:
        name = rng.choice(["Date", "To", "Subject", "Content-Type", "from"])
        headers[name] = "user@example.com" if name != "Date" else DATE
        outside.append(name)
    message = Email(
        subject=subj,
        body=text(rng, "text"),
        from_email=from_email,
        to=lists["to"],
        cc=lists["cc"],
        bcc=[address(rng)] if rng.random() < 0.2 else None,
        reply_to=lists["reply_to"],
        headers=headers,
    )
    if rng.random() < 0.75:
        message.attach_alternative(text(rng, "html"), "text/html")
    if rng.random() < 0.03:
        message.attach_alternative("{}", "application/json")
        outside.append("alternative type")
    if rng.random() < 0.03:
        message.attach("r.csv", "a,b\n1,2\n", "text/csv")
        outside.append("attachment")
    return message, outside


@pytest.mark.parametrize("seed", range(8))
def test_the_direct_writer_writes_what_message_and_as_bytes_write(fixed, seed):
    rng = random.Random(seed)
    direct = 0
    for _ in range(500):
        message, outside = generated(rng)
        first = [10**17] if rng.random() < 0.5 else []  # sometimes a boundary a part holds
        fixed.reset(first)
        reference = as_bytes(message.message())
        fixed.reset(first)
        written = mime._direct_bytes(message)
        fixed.reset(first)
        assert message_bytes(message) == reference
        if outside:
            assert written is None, outside
        else:
            assert written == reference
            direct += 1
    assert direct > 120  # a third of the generated messages are in the shape


def test_in_the_shape_every_transfer_encoding_and_layout_is_written(fixed):
    long_line = "é x " * 300  # 1,500 bytes: quoted-printable
    cases = {
        "text only, 7bit": ("Hi", None, b"Content-Transfer-Encoding: 7bit"),
        "text only, 8bit": ("Hé", None, b"Content-Transfer-Encoding: 8bit"),
        "html only": ("", "<p>Hé</p>", b"Content-Type: text/html"),
        "both, quoted-printable html": ("Hi", long_line, b"quoted-printable"),
        "empty text, empty html": ("", "", b"multipart/alternative"),
        "a line of 998 bytes": ("x" * 998 + "\n", None, b"7bit"),
        "a line of 999 bytes": ("x" * 999 + "\n", None, b"quoted-printable"),
        "998 bytes of 499 characters": ("é" * 499, None, b"8bit"),
    }
    for body, html, expected in cases.values():
        message = Email(subject="s", body=body, from_email="a@acme.test", to=["b@example.com"])
        if html is not None:
            message.attach_alternative(html, "text/html")
        fixed.reset([])
        written = mime._direct_bytes(message)
        fixed.reset([])
        assert written == as_bytes(message.message())
        assert expected in written


def test_boundary_date_and_message_id_have_message_s_forms():
    message = Email(subject="s", body="t", from_email="a@acme.test", to=["b@example.com"])
    message.attach_alternative("<p>t</p>", "text/html")

    written, reference = mime._direct_bytes(message), as_bytes(message.message())

    for output in (written, reference):
        assert DATE_FORM.search(output)
        assert BOUNDARY_FORM.search(output)
        assert re.search(rb"\r\nMessage-ID: <\d+\.\d+\.\d+@[^>]+>\r\n", output)
    assert BOUNDARY_FORM.search(written)[1] != BOUNDARY_FORM.search(reference)[1]


def test_other_messages_and_settings_go_through_message(fixed, settings):
    plain = EmailMultiAlternatives(subject="s", body="t", from_email="a@x.test", to=["b@x.test"])
    assert message_bytes(plain) == as_bytes(plain.message())

    message = Email(subject="s", body="t", from_email="a@x.test", to=["b@x.test"])
    assert mime._direct_bytes(message) is not None
    message.encoding = "iso-8859-1"
    assert mime._direct_bytes(message) is None
    message.encoding = None
    settings.DEFAULT_CHARSET = "iso-8859-1"
    assert mime._direct_bytes(message) is None


def test_smtp_delivery_writes_the_usual_message_directly(monkeypatch, fixed):
    from sends.delivery import PooledSMTPBackend

    def refused(self):
        raise AssertionError("message() was called")

    sent = []

    class Connection:
        def sendmail(self, from_email, to, content):
            sent.append((from_email, to, content))

    message = Email(
        subject="Hello",
        body="Hi there",
        from_email="Bench <bench@example.com>",
        to=["user@example.com"],
        bcc=["hidden@example.com"],
        headers={"Message-ID": MSGID},
    )
    message.attach_alternative("<p>Hi there</p>", "text/html")
    fixed.reset([])
    expected = as_bytes(message.message())
    monkeypatch.setattr(Email, "message", refused)
    backend = PooledSMTPBackend()
    backend.connection = Connection()

    fixed.reset([])
    assert backend._send(message)

    [(_, recipients, content)] = sent
    assert recipients == ["user@example.com", "hidden@example.com"]
    assert content == expected
    assert b"hidden@" not in expected
