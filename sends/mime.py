"""The MIME message as it goes out: no header line longer than RFC 5322's 998 characters.

Django's EmailMessage writes headers with Python's compat32 email policy, which folds a value
only at spaces and a few separators. Two values the API accepts have no such place: a subject
of up to 998 characters without a space, and the RFC 2231 parameter of a non-ASCII attachment
filename (255 × `é` is a 1,530-character `filename*=` line). An SMTP server refuses the message
("500 Line too long"), and a retry can never succeed. `Email` writes both so that they fold;
custom header lines are bounded by validation (`header_fits`), and address headers fold
between addresses, each at most 500 characters once normalised.

The usual send (text and/or HTML, UTF-8, no attachments, header lines that need no folding)
is written directly by `message_bytes`, with the bytes message() and as_bytes() would write;
anything else goes through them.
"""

import binascii
import mimetypes
import re
import secrets
import sys
from email import policy, quoprimime
from email.charset import QP, Charset
from email.generator import NLCRE, BytesGenerator
from email.header import Header
from email.message import EmailMessage
from email.policy import Compat32
from email.utils import formatdate, make_msgid
from io import BytesIO

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import DEFAULT_ATTACHMENT_MIME_TYPE, SafeMIMEText, utf8_charset_qp
from django.core.mail.utils import DNS_NAME

MAX_LINE = 998  # characters per line, CRLF excluded (RFC 5322 section 2.1.1)


def header_fits(name: str, value: str) -> bool:
    """Whether `Name: value` fits on one line as written."""
    return len(name) + 2 + len(value) <= MAX_LINE


def attachment_type(filename: str, content: bytes, content_type: str | None = None) -> str:
    """The Content-Type an attachment goes out with: the given one, else the one its name
    suggests, else application/octet-stream; a text/* one whose bytes are not UTF-8 goes out as
    application/octet-stream (Django's EmailMessage.attach does the same)."""
    chosen = content_type or mimetypes.guess_type(filename)[0] or DEFAULT_ATTACHMENT_MIME_TYPE
    if chosen.startswith("text/"):
        try:
            content.decode()
        except UnicodeDecodeError:
            return DEFAULT_ATTACHMENT_MIME_TYPE
    return chosen


def attachment_facts(attachments: list[dict]) -> list[dict]:
    """What the send keeps of validated attachments: name, type as sent, decoded size; never
    the content."""
    return [
        {
            "filename": item["filename"],
            "contentType": attachment_type(
                item["filename"], item["contentBase64"], item.get("contentType")
            ),
            "size": len(item["contentBase64"]),
        }
        for item in attachments
    ]


def _attachment_disposition(filename: str) -> str:
    """`attachment; filename*0*=utf-8''…; filename*1*=…`: RFC 2231 continuations, folded."""
    part = EmailMessage(policy=policy.default)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    folded = policy.default.fold("Content-Disposition", part["Content-Disposition"])
    return folded.partition(":")[2].strip()


def _as_is(name: str, value, max_line_length: int) -> bool:
    """Whether compat32 writes `Name: value` as given, on one line: an ASCII, printable str
    that fits within `max_line_length`."""
    return (
        isinstance(value, str)
        and bool(max_line_length)
        and len(name) + 2 + len(value) <= max_line_length
        and value.isascii()
        and value.isprintable()
    )


class _Policy(Compat32):
    """compat32, the policy of Django's messages, writing the usual header line directly: an
    ASCII, printable value that fits on one line is written as is by compat32 too, but only
    after a Header object has been built and folded, which was most of the CPU of writing a
    small message. Anything else goes through compat32."""

    def fold_binary(self, name, value):
        if _as_is(name, value, self.max_line_length):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy()


def _set_boundaries(msg) -> None:
    """Gives each multipart part a boundary that none of its parts' contents holds.

    The generator would pick one itself, then compile a new regular expression for it (a
    boundary is random, so never one from re's cache) and search the written parts with it: a
    tenth of a small send's CPU. Here a boundary of the generator's form, from `secrets`, is
    checked against the contents as plain text (a stricter test: anywhere, not only as a line).
    A part whose content is not text (a message/rfc822 attachment) is left to the generator.
    """
    for part in msg.walk():
        if part.get_content_maintype() != "multipart" or part.get_boundary() is not None:
            continue
        inside = list(part.walk())
        if any(leaf.get_content_maintype() == "message" for leaf in inside):
            continue
        contents = [leaf.get_payload() for leaf in inside if not leaf.is_multipart()]
        if not all(isinstance(content, str) for content in contents):
            continue
        part.set_boundary(_new_boundary(contents))


def _new_boundary(contents) -> str:
    """A boundary of the generator's form, from `secrets`, that none of `contents` holds."""
    while True:
        boundary = f"{'=' * 15}{secrets.randbelow(sys.maxsize):019d}=="
        if not any(boundary in content for content in contents):
            return boundary


class _Generator(BytesGenerator):
    """The stdlib's generator, writing a part's text in one piece: it wrote each line and each
    line end apart, two calls per line (a 1 MB HTML part: 25,000 of them). The same bytes."""

    def _write_lines(self, lines):
        if lines:
            self.write(self._NL.join(NLCRE.split(lines)))


def as_bytes(msg, linesep: str = "\r\n") -> bytes:
    """The message as Django's as_bytes() writes it (no "From " mangling), with _Generator."""
    out = BytesIO()
    _Generator(out, mangle_from_=False).flatten(msg, linesep=linesep)
    return out.getvalue()


# What binascii writes otherwise than email.quoprimime (checked against it on random input in
# tests/test_delivery.py): a space or tab at the end of a line or of the text, and a "." alone
# on a line, quoted (the stdlib quotes the first in its own way, the second not at all); a
# quoted character alone after a soft break at the end of a line (the stdlib keeps it on the
# line before, 76 characters long). A space, tab or "." is quoted in no other case, and a "="
# in the text is "=3D", so these find every such place, and a few that are not.
_NOT_AS_THE_STDLIB = re.compile(rb"=2E|=20|=09|=\n=[0-9A-F]{2}(?:\n|\Z)")


def quoted_printable(payload: bytes) -> str:
    """email.quoprimime.body_encode's quoted-printable for bytes (lines ending in LF), the same
    characters, for message() (_QuotedPrintableCharset) and the direct writer alike:
    binascii.b2a_qp in C when it writes the same (without a CR in the text, and none of
    _NOT_AS_THE_STDLIB), else the stdlib's own, which reads the text in Python (a 20 KB HTML
    part: 0.65 CPU ms against 0.19)."""
    if b"\r" not in payload:
        encoded = binascii.b2a_qp(payload)
        if _NOT_AS_THE_STDLIB.search(encoded) is None:
            return encoded.decode("ascii")
    return quoprimime.body_encode(payload.decode("latin1"))


class _QuotedPrintableCharset(Charset):
    def body_encode(self, string):
        if not string or self.body_encoding != QP:
            return super().body_encode(string)
        if isinstance(string, str):
            string = string.encode(self.output_charset)
        return quoted_printable(string)


_UTF8_QP = _QuotedPrintableCharset("utf-8")
_UTF8_QP.body_encoding = QP


class _MIMEText(SafeMIMEText):
    """Django's text part, quoted-printable (Django's choice for a line over 998 bytes) with
    quoted_printable: the same bytes."""

    def set_charset(self, charset):
        super().set_charset(_UTF8_QP if charset is utf8_charset_qp else charset)


class Email(EmailMultiAlternatives):
    """Django's message, with every header line within MAX_LINE characters."""

    def _create_mime_attachment(self, content, mimetype):
        basetype, _, subtype = mimetype.partition("/")
        if basetype == "text":  # as Django builds it
            return _MIMEText(content, subtype, self.encoding or settings.DEFAULT_CHARSET)
        return super()._create_mime_attachment(content, mimetype)

    def message(self):
        msg = super().message()
        msg.policy = _POLICY  # the generator writes every part with it
        if not header_fits("Subject", self.subject):
            # Encoded words (RFC 2047) can be split anywhere; a mail client joins them back.
            msg.replace_header("Subject", Header(self.subject, "utf-8", header_name="Subject"))
        attached = self.attachments and msg.get_content_maintype() == "multipart"
        for part in msg.get_payload() if attached else ():
            filename = part.get_filename()
            if filename and not filename.isascii():
                part.replace_header("Content-Disposition", _attachment_disposition(filename))
        _set_boundaries(msg)
        return msg


# Header names that Django's message() writes, skips or reads itself: a custom header by one of
# these names (the API refuses them all) goes through message().
_OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "date",
        "content-type",
        "mime-version",
        "content-transfer-encoding",
    }
)
_TEXT_SUBTYPES = frozenset({"plain", "html"})
_COMPAT32_MAX = _POLICY.max_line_length  # 78: compat32 folds longer header lines


def _header(name: str, value) -> str | None:
    """`Name: value` CRLF as message() and as_bytes() write it, when that is the value as
    given on one line (what _Policy writes directly); else None."""
    if name.isascii() and _as_is(name, value, _COMPAT32_MAX):
        return f"{name}: {value}\r\n"
    return None


def _crlf(text: str) -> str:
    """Line ends as the generator writes them: CRLF, CR and LF each become CRLF (NLCRE)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", "\r\n")


def _text_part(text, subtype: str) -> tuple[str, bytes, str] | None:
    """(headers, body as written, payload the boundary must not occur in) of a text part as
    SafeMIMEText makes it with utf-8: 7bit or 8bit, or quoted-printable when a line is over
    MAX_LINE bytes (SafeMIMEText's test, lines as str.splitlines() sees them)."""
    if not isinstance(text, str):
        return None
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: message() raises, as it should
        return None
    if len(data) > MAX_LINE and any(
        len(line.encode(errors="surrogateescape")) > MAX_LINE for line in text.splitlines()
    ):
        payload = quoted_printable(data)
        body = _crlf(payload).encode("ascii")
        encoding = "quoted-printable"
    else:
        payload = text
        body = data if "\n" not in text and "\r" not in text else _crlf(text).encode()
        encoding = "7bit" if len(data) == len(text) else "8bit"
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"MIME-Version: 1.0\r\nContent-Transfer-Encoding: {encoding}\r\n"
    )
    return headers, body, payload


def _direct_bytes(email: "Email") -> bytes | None:
    """The bytes as_bytes(email.message()) writes, for the usual send: a text part, an HTML
    part or both (multipart/alternative), UTF-8, no attachments, and header lines that are
    ASCII, printable and within compat32's 78 characters (no folding, no encoded words); the
    boundary, Date and Message-ID drawn as message() and _set_boundaries draw them. None for
    anything else: message() writes it."""
    if (
        email.attachments
        or (email.encoding or settings.DEFAULT_CHARSET) != "utf-8"
        or email.content_subtype != "plain"
        or email.alternative_subtype != "alternative"
    ):
        return None
    extra = email.extra_headers
    lowered = [name.lower() for name in extra]
    if not _OWN_HEADERS.isdisjoint(lowered):
        return None
    subject = email.subject
    # message() sets the subject through Header(subject).encode(), which keeps a printable
    # ASCII value of at most 76 characters as it is, but for a space at either end.
    if not isinstance(subject, str) or subject[:1] == " " or subject[-1:] == " ":
        return None
    lines = [_header("Subject", subject), _header("From", email.from_email)]
    for name, values in (("To", email.to), ("Cc", email.cc), ("Reply-To", email.reply_to)):
        if values:
            lines.append(_header(name, ", ".join(str(value) for value in values)))
    lines.append(_header("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME)))
    if "message-id" not in lowered:
        lines.append(_header("Message-ID", make_msgid(domain=DNS_NAME)))
    for name, value in extra.items():
        lines.append(_header(name, value))
    if None in lines:
        return None
    parts = []
    if email.body or not email.alternatives:
        parts.append(_text_part(email.body, "plain"))
    for content, mimetype in email.alternatives:
        kind, _, subtype = mimetype.partition("/") if isinstance(mimetype, str) else ("", "", "")
        parts.append(
            _text_part(content, subtype) if kind == "text" and subtype in _TEXT_SUBTYPES else None
        )
    if None in parts:
        return None
    if not email.alternatives:
        headers, body, _ = parts[0]
        return (headers + "".join(lines) + "\r\n").encode("ascii") + body
    boundary = _new_boundary([payload for _, _, payload in parts])
    dash = f"--{boundary}\r\n".encode("ascii")
    out = [
        (
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
            f"MIME-Version: 1.0\r\n{''.join(lines)}\r\n--{boundary}\r\n"
        ).encode("ascii")
    ]
    for index, (headers, body, _) in enumerate(parts):
        if index:
            out.append(b"\r\n" + dash)
        out.append(headers.encode("ascii") + b"\r\n")
        out.append(body)
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


def message_bytes(email) -> bytes:
    """as_bytes(email.message()): written directly when _direct_bytes can (an Email of the
    usual shape), else by Django and the email package."""
    if type(email) is Email:
        written = _direct_bytes(email)
        if written is not None:
            return written
    return as_bytes(email.message())
