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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DatabaseError, InterfaceError, OperationalError
from django.db.models import F
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


# Events recorded together (events.record_many): a webhook's batch is read in chunks of this
# many, each chunk a bounded number of statements, so that neither memory nor statement size
# grows with the batch (bounded by MAX_REQUEST_BYTES anyway).
CHUNK = 500


@dataclass
class Outcome:
    """A delivery outcome read from an ESP's event, before it is matched to its message."""

    esp_name: str
    kind: str
    provider_id: str | None
    feedback_id: str | None
    recipient: str | None
    data: dict
    occurred_at: datetime
    provider_event_id: str


class _Batch:
    """The outcomes of one webhook request, recorded a chunk at a time."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if len(self.outcomes) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        outcomes, self.outcomes = self.outcomes, []
        _record(outcomes)


_batch: ContextVar[_Batch | None] = ContextVar("provider_events_batch", default=None)


@contextmanager
def batched() -> Iterator[None]:
    """Within it, the outcomes anymail's `tracking` signal brings are recorded together (a
    chunk at a time, the rest on leaving it) rather than one by one: the webhook views run in
    it (sends/provider_webhooks.py), since SendGrid and Mailjet post thousands of events at
    once. Nothing more is recorded when the block raises."""
    batch = _Batch()
    token = _batch.set(batch)
    try:
        yield
    finally:
        _batch.reset(token)
    batch.flush()


def receive(sender, event, esp_name: str, **kwargs) -> None:
    """anymail's `tracking` signal: records `event` when it is a delivery outcome (at once, or
    with the rest of its webhook's batch).

    Never raises for what a payload holds (logged instead): one odd event of a batch must not
    make the ESP post the whole batch again for days. A database outage does raise: the
    webhook answers 503 and the ESP retries, and what was recorded already is not recorded
    twice.
    """
    try:
        outcome = read(event, esp_name)
    except Exception as exc:
        logger.error("%s event not recorded: %s", esp_name, type(exc).__name__, exc_info=exc)
        return
    if outcome is None:
        return
    batch = _batch.get()
    if batch is None:
        _record([outcome])
    else:
        batch.add(outcome)


def read(event, esp_name: str) -> Outcome | None:
    """The outcome anymail's `event` reports; None when it is no delivery outcome."""
    details = esp_details(esp_name, event)
    kind = OUTCOMES.get(event.event_type)
    if details.get("delayed"):
        kind = Type.DELAYED
    if kind is None:
        return None
    recipient = _address(event.recipient)
    return Outcome(
        esp_name=esp_name,
        kind=kind,
        provider_id=_text(event.message_id, Message.PROVIDER_ID_MAX_LENGTH),
        feedback_id=_echoed_feedback_id(event),
        recipient=recipient,
        data=outcome_data(kind, event, details),
        occurred_at=_moment(event.timestamp),
        provider_event_id=_provider_event_id(kind, event, details, recipient),
    )


def _record(outcomes: list[Outcome]) -> None:
    """Matches `outcomes` to their messages and records them together (a bounded number of
    statements: events.record_many). Should the bulk write fail for what a row holds, each
    event is tried on its own, so that one bad event does not cost the others."""
    try:
        built = _events(outcomes)
        try:
            new = events.record_many(built)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            logger.warning(
                "%d events not recorded together (%s): one at a time",
                len(built),
                type(exc).__name__,
            )
            new = _one_by_one(built)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        logger.error("%d events not recorded: %s", len(outcomes), type(exc).__name__, exc_info=exc)
        return
    recorded = {event.public_id for event in new}
    for event in built:
        if event.public_id not in recorded:
            logger.debug("%s event of %s seen before", event.type, event.send.public_id)


def _one_by_one(built: list[Event]) -> list[Event]:
    new = []
    for event in built:
        # The failed write was rolled back: the event is unwritten again.
        event.pk, event._state.adding = None, True
        try:
            new += events.record_many([event])
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            logger.error(
                "%s event of %s not recorded: %s",
                event.type,
                event.send.public_id,
                type(exc).__name__,
                exc_info=exc,
            )
    return new


def _events(outcomes: list[Outcome]) -> list[Event]:
    """The outcomes that belong to a message of this service, as events to record."""
    messages = Message.objects.for_provider_ids({o.provider_id for o in outcomes if o.provider_id})
    unmatched = [o for o in outcomes if messages.get(o.provider_id) is None]
    by_feedback = _sends_of_feedback_ids({o.feedback_id for o in unmatched if o.feedback_id})
    built = []
    for outcome in outcomes:
        message = messages.get(outcome.provider_id)
        if message is not None:
            send = message.send
        elif outcome.feedback_id in by_feedback:
            send, message = by_feedback[outcome.feedback_id]
        else:
            logger.info(
                "%s %s event for no message of this service (provider id %r): acknowledged",
                outcome.esp_name,
                outcome.kind,
                (outcome.provider_id or "")[:100],
            )
            continue
        built.append(
            events.build(
                send=send,
                message=message,
                type=outcome.kind,
                data=outcome.data,
                occurred_at=outcome.occurred_at,
                recipient=outcome.recipient,
                dedupe=events.dedupe_key(
                    outcome.provider_id or send.public_id, outcome.kind, outcome.provider_event_id
                ),
            )
        )
    return built


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


def _echoed_feedback_id(event) -> str | None:
    # Amazon SES passes the original headers on (mail.headers: [{"name", "value"}, …]).
    headers = _dig(event.esp_event, "mail", "headers")
    for header in headers if isinstance(headers, list) else []:
        if str(_dig(header, "name")).lower() == "feedback-id":
            return _text(header.get("value"), 255)
    return None


def _sends_of_feedback_ids(values: set[str]) -> dict[str, tuple[Send, Message | None]]:
    """The sends that Feedback-ID headers name, each with its newest message that has a
    provider id: two queries whatever their number."""
    # sends/services.py: "<send id>:<organization slug>:<policy>:fluxomail".
    named = {}
    for value in values:
        parts = value.split(":")
        if len(parts) == 4 and parts[3] == "fluxomail":
            named[value] = (parts[0], parts[1])
    if not named:
        return {}
    sends = {
        send.public_id: send
        for send in Send.objects.filter(public_id__in={i for i, _ in named.values()}).annotate(
            organization_slug=F("organization__slug")
        )
    }
    newest: dict[int, Message] = {}
    for message in (
        Message.objects.filter(send__in=sends.values())
        .exclude(provider_message_id="")
        .defer(*Message.BODY_FIELDS)
        .order_by("id")
    ):
        newest[message.send_id] = message
    found = {}
    for value, (public_id, slug) in named.items():
        send = sends.get(public_id)
        if send is not None and send.organization_slug == slug:
            found[value] = (send, newest.get(send.pk))
    return found


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
