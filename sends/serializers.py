"""The send API's request body: every rule of SPEC.md section 3, with every offending field named.

A plain DRF Serializer (no model): the body is checked in full before anything is stored, and the
error details feed the 400 `validation_error` answer unchanged.
"""

import base64
import binascii
import copy
import mimetypes
import re
from email.utils import formataddr, getaddresses, parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from fluxomail.addresses import is_bare, to_ascii
from sends.html_limits import html_problem
from sends.mime import MAX_LINE, header_fits
from sends.models import Policy

MAX_RECIPIENTS = 50
MAX_ADDRESS_LENGTH = 500
MAX_ADDRESS_COMMENTS = 10
MAX_ATTACHMENTS = 5
MAX_HEADERS = 20
MAX_METADATA_KEYS = 10
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
DEFAULT_POLICY = "transactional"

# Headers the service writes itself (now or when tracking/unsubscribe land): a request may not
# shadow them, even with an X-/List- name.
RESERVED_HEADERS = {
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
    "x-fluxomail-send-id",
}
_HEADER_NAME = re.compile(r"^(X|List)-[A-Za-z0-9][A-Za-z0-9-]*$", re.IGNORECASE)
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What may not reach a header: C0 but TAB, DEL, C1 (NEL \x85 among them) and the Unicode line and
# paragraph separators. Python's email package refuses or folds on several of them at delivery,
# long after the Send was stored; CR/LF would inject headers.
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_MESSAGE = "Must not contain line breaks or other control characters."
LOCAL_PART_MESSAGE = (
    "The part before the @ must be ASCII: internationalised mailbox names (SMTPUTF8) are not "
    "supported."
)
DOMAIN_MESSAGE = "The domain is not a valid internationalised domain name."


def has_control(value: str) -> bool:
    return _HEADER_CONTROL.search(value) is not None


def no_control(value: str) -> None:
    if has_control(value):
        raise serializers.ValidationError(CONTROL_MESSAGE)


def ascii_address(addr: str) -> str:
    """`addr` with its domain in ASCII (IDNA 2008, `fluxomail.addresses.to_ascii`);
    ValidationError when it cannot be sent.

    The local part must be ASCII already: sending it otherwise needs SMTPUTF8 end to end.
    """
    local, at, domain = addr.rpartition("@")
    if not at:
        raise serializers.ValidationError("Enter a valid email address.")
    if not local.isascii():
        raise serializers.ValidationError(LOCAL_PART_MESSAGE)
    try:
        return f"{local}@{to_ascii(domain)}"
    except UnicodeError:
        raise serializers.ValidationError(DOMAIN_MESSAGE) from None


def parse_address(value: str) -> tuple[str, str]:
    """One address, `addr` or `Name <addr>`, as (name, addr); ValidationError otherwise.

    The address comes back with an ASCII (punycode) domain.
    """
    # Bounded before email.utils reads it: its parser loops in Python per character and
    # recurses per nested comment, so "((((…" of 500 characters overflows the stack.
    if len(value) > MAX_ADDRESS_LENGTH:
        raise serializers.ValidationError(
            f"Ensure this field has no more than {MAX_ADDRESS_LENGTH} characters."
        )
    if value.count("(") > MAX_ADDRESS_COMMENTS:
        raise serializers.ValidationError("Enter a valid email address.")
    no_control(value)
    text = value.strip()
    if not text:
        raise serializers.ValidationError("Enter a valid email address.")
    if is_bare(text):
        # What getaddresses and parseaddr make of it: one address, itself, no name.
        name, addr = "", text
    else:
        if len(getaddresses([text])) != 1:
            raise serializers.ValidationError("Enter exactly one email address.")
        name, addr = parseaddr(text)
        # parseaddr is lenient: it drops what it cannot read. Accept only the two exact shapes.
        if "<" in text:
            if not text.endswith(">") or text.count("<") != 1:
                raise serializers.ValidationError("Enter a valid email address.")
        elif addr != text:
            raise serializers.ValidationError("Enter a valid email address.")
    addr = ascii_address(addr)
    try:
        validate_email(addr)
    except DjangoValidationError:
        raise serializers.ValidationError("Enter a valid email address.") from None
    return name, addr


def format_address(value: str) -> str:
    """The address as the mail header and the send row hold it (quoted, escaped or encoded):
    that form, not only what the client wrote, must fit in MAX_ADDRESS_LENGTH (the columns)."""
    formatted = formataddr(parse_address(value))
    if len(formatted) > MAX_ADDRESS_LENGTH:
        raise serializers.ValidationError(
            f"Ensure this field has no more than {MAX_ADDRESS_LENGTH} characters once encoded "
            "for the mail header."
        )
    return formatted


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would turn 5 into "5"."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # DRF's surrogate check loops in Python over every character (2 s for 16 MB); the JSON
        # parser (fluxomail.parsers) refuses lone surrogates before any field is looked at.
        self.validators = [
            validator
            for validator in self.validators
            if not isinstance(validator, ProhibitSurrogateCharactersValidator)
        ]

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class AddressField(StrictCharField):
    """One address; the internal value is normalised to `Name <addr>` or `addr`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> str:
        return format_address(super().to_internal_value(data))


class AddressListField(serializers.Field):
    """A string or a list of strings, each one address; the internal value is a list."""

    default_error_messages = {"invalid": "Must be an address or a list of addresses."}

    def to_internal_value(self, data) -> list[str]:
        single = isinstance(data, str)
        if single:
            data = [data]
        if isinstance(data, list) and len(data) > MAX_RECIPIENTS:
            raise serializers.ValidationError(
                f"At most {MAX_RECIPIENTS} recipients in to, cc and bcc together."
            )
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            self.fail("invalid")
        out, errors = [], {}
        for index, item in enumerate(data):
            try:
                out.append(format_address(item))
            except serializers.ValidationError as exc:
                errors[index] = [exc.detail[0]]
        if errors:
            # Named by position as clients write them (`cc[1]`); a lone string by its field.
            raise serializers.ValidationError(errors[0] if single else errors)
        return out

    def to_representation(self, value):
        return value


class BoundedListField(serializers.ListField):
    """A ListField whose max_length is checked before any item is validated (DRF checks after)."""

    def to_internal_value(self, data):
        if isinstance(data, list) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class BoundedDictField(serializers.DictField):
    """A DictField of at most `max_length` keys, counted before any value is validated."""

    def __init__(self, *, max_length: int, too_many: str, **kwargs):
        self.max_length = max_length
        self.too_many = too_many
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, dict) and len(data) > self.max_length:
            raise serializers.ValidationError(self.too_many)
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """Refuses unknown fields, named together with the other field errors."""

    def get_fields(self) -> dict:
        # DRF deep-copies the declared fields for every instance, which rebuilds each one from
        # its arguments (the attachment serializer inside its list too): more than half of the
        # validation's cost. No field here is changed after it is built, so each instance gets
        # shallow copies to bind to itself; a list's or dict's child is shared and only read.
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Expected a JSON object."]})
        errors: dict = {}
        value = None
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = dict(exc.detail)
        for name in sorted(set(data) - set(self.fields)):
            errors[name] = ["Unknown field."]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class AttachmentSerializer(StrictSerializer):
    filename = StrictCharField(max_length=255, trim_whitespace=False)
    contentBase64 = StrictCharField(trim_whitespace=False, allow_blank=True)  # noqa: N815
    contentType = StrictCharField(max_length=255, required=False)  # noqa: N815

    def validate_filename(self, value: str) -> str:
        if "/" in value or "\\" in value or _CONTROL.search(value) or value in (".", ".."):
            raise serializers.ValidationError(
                "Must not contain path separators or control characters."
            )
        return value

    def validate_contentBase64(self, value: str) -> bytes:  # noqa: N802
        compact = value.replace("\r", "").replace("\n", "")
        if len(compact) % 4 or not _BASE64.match(compact):
            raise serializers.ValidationError("Must be valid base64.")
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Must be valid base64.") from None

    def validate_contentType(self, value: str) -> str:  # noqa: N802
        if not _CONTENT_TYPE.fullmatch(value):
            raise serializers.ValidationError("Must be a MIME type such as application/pdf.")
        return value.lower()

    def validate(self, attrs: dict) -> dict:
        # Other types go out in base64; a message/rfc822 one (given, or guessed from `.eml` as
        # Django guesses it) goes out as written, as RFC 2046 requires, so its lines must fit.
        content_type = attrs.get("contentType") or mimetypes.guess_type(attrs["filename"])[0]
        lines = attrs["contentBase64"].splitlines()
        if content_type == "message/rfc822" and max(map(len, lines), default=0) > MAX_LINE:
            raise serializers.ValidationError(
                {
                    "contentBase64": [
                        "A message/rfc822 attachment is sent as written (RFC 2046 allows no "
                        f"base64 for it): each of its lines must be at most {MAX_LINE} bytes."
                    ]
                }
            )
        return attrs


class SendEmailSerializer(StrictSerializer):
    """The body of POST /api/v1/emails/send and /send-global.

    context: `organization` (for policyKey and fromEmail). After is_valid(), `self.policy` is the
    Policy named by policyKey (or the default one), None if it was deleted meanwhile.
    """

    to = AddressField()
    subject = StrictCharField(max_length=998, trim_whitespace=False)
    content = StrictCharField(trim_whitespace=False)
    htmlContent = StrictCharField(  # noqa: N815
        required=False, allow_blank=True, trim_whitespace=False
    )
    cc = AddressListField(required=False)
    bcc = AddressListField(required=False)
    attachments = BoundedListField(
        child=AttachmentSerializer(), required=False, max_length=MAX_ATTACHMENTS
    )
    policyKey = StrictCharField(max_length=50, required=False)  # noqa: N815
    idempotencyKey = StrictCharField(  # noqa: N815
        max_length=255, required=False, trim_whitespace=False
    )
    fromName = StrictCharField(  # noqa: N815
        max_length=200, required=False, allow_blank=True, trim_whitespace=False
    )
    fromEmail = AddressField(required=False)  # noqa: N815
    replyTo = AddressField(required=False)  # noqa: N815
    headers = BoundedDictField(
        child=StrictCharField(allow_blank=True),
        required=False,
        max_length=MAX_HEADERS,
        too_many=f"At most {MAX_HEADERS} headers.",
    )
    metadata = BoundedDictField(
        child=StrictCharField(allow_blank=True, max_length=MAX_METADATA_VALUE_LENGTH),
        required=False,
        max_length=MAX_METADATA_KEYS,
        too_many=f"At most {MAX_METADATA_KEYS} keys.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy: Policy | None = None

    @property
    def organization(self):
        return self.context["organization"]

    def validate_subject(self, value: str) -> str:
        no_control(value)
        return value

    def _bounded(self, value: str) -> str:
        limit = settings.SEND_MAX_CONTENT_BYTES
        # A character is at least one byte: a longer string is refused without encoding it.
        if len(value) > limit or len(value.encode("utf-8")) > limit:
            raise serializers.ValidationError(f"Must be at most {limit} bytes.")
        return value

    def validate_content(self, value: str) -> str:
        return self._bounded(value)

    def validate_htmlContent(self, value: str) -> str:  # noqa: N802
        value = self._bounded(value)
        # Bounded tags, attributes per tag and links: what reading the HTML costs (html_limits).
        problem = html_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_fromName(self, value: str) -> str:  # noqa: N802
        no_control(value)
        return value

    def validate_fromEmail(self, value: str) -> str:  # noqa: N802
        from sends.delivery import identity

        _, addr = parseaddr(value)
        _, identity_address = identity(self.organization)
        if not self.organization.from_email:
            # Without an identity of its own an organization sends as the service: any other
            # address on that domain (security@, billing@) would speak for the operator.
            if addr.lower() != identity_address.lower():
                raise serializers.ValidationError(
                    "Without a sending identity only the default address "
                    f"{identity_address} may be used."
                )
            return identity_address
        domain = identity_address.rpartition("@")[2]
        if addr.rpartition("@")[2].lower() != domain.lower():
            raise serializers.ValidationError(f"Must be an address on {domain}.")
        return addr

    def validate_policyKey(self, value: str) -> str:  # noqa: N802
        policy = Policy.objects.cached(self.organization, value)
        if policy is None:
            raise serializers.ValidationError(f"Unknown policy {value!r}.")
        self.policy = policy
        return value

    def validate_headers(self, value: dict) -> dict:
        errors, seen = [], set()
        for name, header_value in value.items():
            if not _HEADER_NAME.fullmatch(name):
                errors.append(f"{name!r}: header names must start with X- or List-.")
            elif name.lower() in RESERVED_HEADERS or name.lower().startswith("x-fluxomail-"):
                errors.append(f"{name!r}: this header is set by the service.")
            elif name.lower() in seen:
                errors.append(f"{name!r}: given twice.")
            if has_control(header_value):
                errors.append(
                    f"{name!r}: values must not contain line breaks or other control characters."
                )
            elif not header_fits(name, header_value):
                errors.append(
                    f"{name!r}: the header line (name, colon, space and value) must be at most "
                    f"{MAX_LINE} characters (RFC 5322)."
                )
            seen.add(name.lower())
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_metadata(self, value: dict) -> dict:
        for name in value:
            if not 1 <= len(name) <= MAX_METADATA_KEY_LENGTH:
                raise serializers.ValidationError(
                    f"Keys must be 1 to {MAX_METADATA_KEY_LENGTH} characters."
                )
            # NUL cannot be stored in jsonb; keys are echoed in events and webhooks.
            if _CONTROL.search(name):
                raise serializers.ValidationError("Keys must not contain control characters.")
        return value

    def validate(self, attrs: dict) -> dict:
        errors = {}
        recipients = 1 + len(attrs.get("cc", [])) + len(attrs.get("bcc", []))
        if recipients > MAX_RECIPIENTS:
            message = f"At most {MAX_RECIPIENTS} recipients in to, cc and bcc together."
            errors.update({name: [message] for name in ("cc", "bcc") if attrs.get(name)})
        attachments = attrs.get("attachments", [])
        total = sum(len(item["contentBase64"]) for item in attachments)
        if total > settings.SEND_MAX_ATTACHMENT_BYTES:
            errors["attachments"] = [
                f"At most {settings.SEND_MAX_ATTACHMENT_BYTES} bytes decoded in all."
            ]
        if errors:
            raise serializers.ValidationError(errors)
        attrs.setdefault("policyKey", DEFAULT_POLICY)
        if self.policy is None:
            # Every mail needs its policy: the category the suppression check applies, the
            # one-click unsubscribe switch and, for HTML, the tracking switches.
            self.policy = Policy.objects.cached(self.organization, attrs["policyKey"])
        return attrs
