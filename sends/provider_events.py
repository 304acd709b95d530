"""Delivery outcomes from the ESPs: django-anymail's `tracking` signal into the event log.

anymail turns each ESP's webhook payload into normalized AnymailTrackingEvents
(sends/provider_webhooks.py mounts its views); `receive` records those that are delivery
outcomes (SPEC section 7) on the message the ESP names, through events.record. ESP opens and
clicks are ignored: the service tracks its own, and recording both would count each twice.
Neither an IP address nor a user agent of the payload is kept.
"""

import ipaddress
import logging
import re
from datetime import UTC, datetime

from django.db import InterfaceError, OperationalError
from django.utils import timezone

from sends import events
from sends.models import Event, Message, Send

logger = logging.getLogger("fluxomail.provider_events")

Type = Event.Type

# anymail's normalized event types that are delivery outcomes, and the event each becomes.
OUTCOMES = {
    "delivered": Type.DELIVERED,
    "deferred": Type.DELAYED,
    "bounced": Type.BOUNCED,
    "rejected": Type.BOUNCED,
    "complained": Type.COMPLAINED,
    "failed": Type.FAILED,
}
# anymail's reject reasons that say the address itself is bad.
HARD_REASONS = ("bounced", "invalid")
# Feedback types of complaint reports (RFC 5965, 6591, 6650), as Amazon SES passes them on.
FEEDBACK_TYPES = ("abuse", "auth-failure", "fraud", "not-spam", "other", "virus")
TEXT_MAX_LENGTH = 1000

# "550 5.1.1 …", "smtp; 421 …": the reply code at the start of an SMTP answer.
_SMTP_CODE = re.compile(r"^(?:smtp\s*;\s*)?([2-5]\d\d)(?![\d.])", re.IGNORECASE)
# "5.1.1", "4.4.7": an enhanced status code (RFC 3463) anywhere in the answer.
_ENHANCED_CLASS = re.compile(r"(?:^|[\s;(])([245])\.\d{1,3}\.\d{1,3}(?![\d.])")
_DSN_PREFIX = re.compile(r"^smtp\s*;\s*", re.IGNORECASE)


def receive(sender, event, esp_name: str, **kwargs) -> None:
    """anymail's `tracking` signal: records `event` when it is a delivery outcome.

    Never raises for what a payload holds (logged instead): one odd event of a batch must not
    make the ESP post the whole batch again for days. A database outage does raise: the
    webhook answers 503 and the ESP retries, and what was recorded already is not recorded
    twice.
    """
    try:
        _receive(event, esp_name)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        logger.error("%s event not recorded: %s", esp_name, type(exc).__name__, exc_info=exc)


def _receive(event, esp_name: str) -> None:
    details = esp_details(esp_name, event)
    kind = OUTCOMES.get(event.event_type)
    if details.get("delayed"):
        kind = Type.DELAYED
    if kind is None:
        return
    provider_id = _text(event.message_id, Message.PROVIDER_ID_MAX_LENGTH)
    found = _find(provider_id, event)
    if found is None:
        logger.info(
            "%s %s event for no message of this service (provider id %r): acknowledged",
            esp_name,
            kind,
            (provider_id or "")[:100],
        )
        return
    send, message = found
    recipient = _address(event.recipient)
    recorded = events.record(
        send=send,
        message=message,
        type=kind,
        data=outcome_data(kind, event, details),
        occurred_at=_moment(event.timestamp),
        recipient=recipient,
        dedupe=events.dedupe_key(
            provider_id or send.public_id, kind, _provider_event_id(kind, event, details, recipient)
        ),
    )
    if recorded is None:
        logger.debug("%s %s event of %s seen before", esp_name, kind, send.public_id)


def esp_details(esp_name: str, event) -> dict:
    """What an ESP's payload says beyond anymail's normalized fields, where the ESP documents
    it: whether a bounce is permanent, the SMTP code and receiving host, a steadier event id,
    and Amazon SES's delays (anymail does not know that event type)."""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    if esp_name == "Amazon SES":
        details = {"permanent": _word(_dig(raw, "bounce", "bounceType"), "Permanent", "Transient")}
        if raw.get("eventType") == "DeliveryDelay":
            delayed = _dig(raw, "deliveryDelay", "delayedRecipients")
            for entry in delayed if isinstance(delayed, list) else []:
                if _dig(entry, "emailAddress") == event.recipient:
                    details.update(
                        delayed=True,
                        response=entry.get("diagnosticCode"),
                        reason=_dig(raw, "deliveryDelay", "delayType"),
                    )
        return details
    if esp_name == "Postmark" and "Type" in raw:
        return {"permanent": raw["Type"] in ("HardBounce", "BadEmailAddress")}
    if esp_name == "Mailjet" and raw.get("event") in ("bounce", "blocked"):
        hard = raw.get("hard_bounce")
        return {"permanent": hard if isinstance(hard, bool) else None, "reason": raw.get("error")}
    if esp_name == "SendGrid" and raw.get("event") == "bounce":
        # SendGrid's own classification: "bounce" (the address is bad) or "blocked".
        return {"permanent": _word(raw.get("type"), "bounce", "blocked")}
    if esp_name == "Mailgun":
        return {
            "permanent": _word(_dig(raw, "event-data", "severity"), "permanent", "temporary"),
            "smtpCode": _dig(raw, "event-data", "delivery-status", "code"),
            "mtaHost": _dig(raw, "event-data", "delivery-status", "mx-host"),
            # anymail's id for Mailgun is the signature's token, which is new on each post.
            "eventId": _dig(raw, "event-data", "id"),
        }
    return {}


def _word(value, permanent: str, transient: str) -> bool | None:
    """True for the ESP's word for a permanent failure, False for its transient one."""
    return {permanent: True, transient: False}.get(value) if isinstance(value, str) else None


def outcome_data(kind: str, event, details: dict) -> dict:
    """The type's members of the envelope (SPEC section 7) from anymail's fields."""
    response = _answer(details.get("response")) or _answer(event.mta_response)
    description = _text(event.description)
    reason = _text(details.get("reason"))
    code = details.get("smtpCode")
    if not _is_smtp_code(code):
        code = _smtp_code(response)
    data: dict = {}
    if kind == Type.DELIVERED:
        if response:
            data["response"] = response
    elif kind == Type.BOUNCED:
        data["bounceType"] = _bounce_type(event, details, code, response)
        data["reason"] = response or reason or description or _text(event.reject_reason)
    elif kind == Type.COMPLAINED:
        feedback = (description or "").lower()
        data["feedbackType"] = feedback if feedback in FEEDBACK_TYPES else None
    else:
        data["reason"] = response or reason or description
    if code:
        data["smtpCode"] = code
    host = _host(details.get("mtaHost"))
    if host:
        data["mtaHost"] = host
    return data


def _bounce_type(event, details: dict, code: int | None, response: str | None) -> str:
    """hard when the address is bad for good, soft when a later try may get through."""
    permanent = details.get("permanent")
    if permanent is None and event.event_type == "bounced":
        # The receiving server's answer: 5xx is permanent, 4xx transient.
        if code:
            permanent = code >= 500
        elif response and (match := _ENHANCED_CLASS.search(response)):
            permanent = match.group(1) == "5"
    if permanent is None:
        reason = event.reject_reason
        permanent = reason in HARD_REASONS or (event.event_type == "bounced" and reason is None)
    return "hard" if permanent else "soft"


def _find(provider_id: str | None, event) -> tuple[Send, Message | None] | None:
    """The send and message the event is about: by the provider's message id, or by the
    Feedback-ID header the service set when the ESP echoes the message's headers."""
    if provider_id:
        message = Message.objects.for_provider_id(provider_id)
        if message is not None:
            return message.send, message
    send = _send_of_feedback_id(_echoed_feedback_id(event))
    if send is None:
        return None
    return send, send.messages.exclude(provider_message_id="").order_by("-id").first()


def _echoed_feedback_id(event) -> str | None:
    # Amazon SES passes the original headers on (mail.headers: [{"name", "value"}, …]).
    headers = _dig(event.esp_event, "mail", "headers")
    for header in headers if isinstance(headers, list) else []:
        if str(_dig(header, "name")).lower() == "feedback-id":
            return _text(header.get("value"), 255)
    return None


def _send_of_feedback_id(value: str | None) -> Send | None:
    # sends/services.py: "<send id>:<organization slug>:<policy>:fluxomail".
    parts = (value or "").split(":")
    if len(parts) != 4 or parts[3] != "fluxomail":
        return None
    return Send.objects.filter(public_id=parts[0], organization__slug=parts[1]).first()


def _provider_event_id(kind: str, event, details: dict, recipient: str | None) -> str:
    """What tells two events of one message and type apart. A final outcome (delivered,
    bounced, complained, failed) happens once per recipient: whatever repeats it (an ESP's
    retry, SES's notifications next to its event publishing, Postmark's suppression notice
    after a hard bounce) is the same event. Delays come many times, each its own event."""
    if kind != Type.DELAYED:
        return f"to:{recipient or ''}"
    moment = event.timestamp.isoformat() if isinstance(event.timestamp, datetime) else ""
    event_id = _text(details.get("eventId"), 255) or _text(event.event_id, 255) or moment
    return f"{event_id}/{recipient or ''}"


def _moment(value) -> datetime:
    """The ESP's time of the event; now when it gives none or one in the future."""
    now = timezone.now()
    if not isinstance(value, datetime):
        return now
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return min(value, now)


def _dig(value, *keys):
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value, limit: int = TEXT_MAX_LENGTH) -> str | None:
    """A payload's value as text that every database stores: a string or number, without NUL
    characters or lone surrogates, trimmed and cut to `limit`; None when empty or another type."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return text[:limit] or None


def _answer(value) -> str | None:
    """A receiving server's answer, without the "smtp;" of a delivery status notification."""
    return _DSN_PREFIX.sub("", _text(value) or "") or None


def _address(value) -> str | None:
    address = _text(value, 255)
    if address is None or len(address) > 254 or "@" not in address or " " in address:
        return None
    return address


def _host(value) -> str | None:
    """A receiving server's host name; an IP address is not kept."""
    host = _text(value, 255)
    if host is None or " " in host:
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    return None


def _is_smtp_code(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599


def _smtp_code(response: str | None) -> int | None:
    match = _SMTP_CODE.match(response or "")
    return int(match.group(1)) if match else None
