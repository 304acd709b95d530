"""The event log (SPEC.md section 7): recording an event, and the one envelope every reader shows.

`record()` writes one event, `record_many()` a batch of them (a provider's webhook): both
insert the rows, keep the metrics' counters (EventCounter), suppress the address of a hard
bounce or complaint, and drop a provider's event that was recorded before (same provider
message id, type and provider event id); `record()` also keeps the send's first-open and
first-click marks. The send path's own outcomes (sent, failed, dropped) are rows built by
`build()` too, and counted by `plain_counter()`, but written on PostgreSQL in one statement with
the send's other rows (sends/sql.py). `announce()` tells the listeners of every new event, once,
after commit (`signals.event_recorded`).
`envelope()` is the only way an event is shown: the timeline, the events API, the stream, the
dashboard, the admin and outbound webhooks all call it.
"""

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from contacts import services as contacts_services
from contacts.models import Suppression
from fluxomail.addresses import addr_spec
from fluxomail.ids import new_id
from fluxomail.times import iso, parse_moment  # noqa: F401 (part of this module's API)
from sends.models import Event, EventCounter, Message, Send
from sends.signals import event_recorded

Type = Event.Type
Name = EventCounter.Name

ALL_TYPES = tuple(Type.values)
WILDCARD = "email.*"

# The counter an event type adds to (opens and clicks are handled in _counter_names).
_COUNTER = {
    Type.SENT: Name.SENT,
    Type.DELIVERED: Name.DELIVERED,
    Type.DELAYED: Name.DELAYED,
    Type.BOUNCED: Name.BOUNCED,
    Type.COMPLAINED: Name.COMPLAINED,
    Type.FAILED: Name.FAILED,
    Type.DROPPED: Name.DROPPED,
}


def address_of(recipient: str) -> str:
    return addr_spec(recipient) or recipient


def domain_of(recipient: str) -> str:
    return address_of(recipient).rpartition("@")[2].lower()


def dedupe_key(provider_message_id: str, type: str, provider_event_id: str) -> str:
    raw = "\x1f".join((provider_message_id, type, provider_event_id))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def expand_types(patterns: list[str]) -> list[str] | None:
    """The event types that `patterns` name (exact types or `email.*`); None means all."""
    if not patterns or WILDCARD in patterns:
        return None
    return sorted(set(patterns))


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _bump(organization_id: int, moment: datetime, names: list[str]) -> None:
    """Adds one to each counter in `names` for the organization's hour of `moment`."""
    _add_counts({(organization_id, hour_of(moment), name): 1 for name in names})


def _add_counts(counts: Mapping[tuple[int, datetime, str], int]) -> None:
    """Adds to the counters of (organization id, hour, name) buckets.

    One upsert statement for all buckets (INSERT … ON CONFLICT DO UPDATE SET count = count +
    excluded.count, on SQLite and PostgreSQL alike): the ORM would need a SELECT and an UPDATE
    or INSERT per bucket, and concurrent writers would lose increments. Each bucket appears
    once (PostgreSQL refuses to update one row twice in a statement).
    """
    if not counts:
        return
    table = EventCounter._meta.db_table
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(counts))
    params = []
    for (organization_id, hour, name), count in counts.items():
        params += [organization_id, connection.ops.adapt_datetimefield_value(hour), name, count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (organization_id, hour, name, count) VALUES {rows} "
            "ON CONFLICT (organization_id, hour, name) "
            f"DO UPDATE SET count = {table}.count + excluded.count",
            params,
        )


def _first(send: Send, field: str, moment: datetime) -> bool:
    """Marks the send's first open (or click); True for the one caller that set it."""
    updated = Send.objects.filter(pk=send.pk, **{f"{field}__isnull": True}).update(
        **{field: moment}
    )
    if updated:
        setattr(send, field, moment)
    return bool(updated)


def _counter_names(event: Event, send: Send) -> list[str]:
    if event.type == Type.OPENED:
        # Machine opens (privacy proxies, scanners, opens in the first seconds) say nothing
        # about a reader: they are kept in the log but left out of the open metrics.
        if event.data.get("machine"):
            return []
        names = [Name.OPENED]
        if _first(send, "first_opened_at", event.occurred_at):
            names.append(Name.UNIQUE_OPENED)
        return names
    if event.type == Type.CLICKED:
        names = [Name.CLICKED]
        if _first(send, "first_clicked_at", event.occurred_at):
            names.append(Name.UNIQUE_CLICKED)
        return names
    return [_COUNTER[event.type]]


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def metrics(organization, since: datetime | None) -> dict:
    """The counts and rates of SPEC section 9 since `since` (None: all time), from the
    hourly EventCounter rows; the hour that holds `since` is counted whole."""
    counters = EventCounter.objects.filter(organization=organization)
    if since is not None:
        counters = counters.filter(hour__gte=hour_of(since))
    totals = dict(counters.values_list("name").annotate(total=Sum("count")).order_by())
    count = {name: totals.get(name, 0) for name in EventCounter.Name.values}
    sent = count["sent"]
    return {
        "totalSent": sent,
        "totalDelivered": count["delivered"],
        "deliveryRate": _rate(count["delivered"], sent),
        "totalOpened": count["opened"],
        "uniqueOpens": count["unique_opened"],
        "avgOpenRate": _rate(count["unique_opened"], sent),
        "totalClicked": count["clicked"],
        "uniqueClicks": count["unique_clicked"],
        "avgClickRate": _rate(count["unique_clicked"], sent),
        "avgClickToOpenRate": _rate(count["unique_clicked"], count["unique_opened"]),
        "totalBounced": count["bounced"],
        "bounceRate": _rate(count["bounced"], sent),
        "totalComplained": count["complained"],
        "complaintRate": _rate(count["complained"], sent),
        "totalDelayed": count["delayed"],
        "delayedRate": _rate(count["delayed"], sent),
    }


def build(
    *,
    send: Send,
    type: str,
    message: Message | None = None,
    data: dict | None = None,
    occurred_at: datetime | None = None,
    recipient: str | None = None,
    dedupe: str | None = None,
) -> Event:
    """An event of `send`, not yet written (record() and record_many() write it).

    `recipient` is the address the event is about (a provider's per-recipient event); the
    send's `to` otherwise. `data` holds the type's members of the envelope (SPEC section 7).
    `dedupe` makes it a provider's event that is recorded once (dedupe_key()).
    """
    data = dict(data or {})
    if recipient:
        data["to"] = address_of(recipient)
    smtp_code = data.get("smtpCode")
    # The time first, then the id: an id's millisecond is then never before the event's, so that
    # `since` given as the event's time (ISO or epoch ms) includes it.
    occurred_at = occurred_at or timezone.now()
    return Event(
        public_id=new_id("evt"),
        organization_id=send.organization_id,
        send=send,
        message=message,
        type=type,
        occurred_at=occurred_at,
        recipient_domain=domain_of(recipient or send.to),
        smtp_code=smtp_code if isinstance(smtp_code, int) and 0 < smtp_code < 1000 else None,
        mta_host=str(data.get("mtaHost") or "")[:255],
        data=data,
        dedupe_key=dedupe,
    )


def record(
    *,
    send: Send,
    type: str,
    message: Message | None = None,
    data: dict | None = None,
    occurred_at: datetime | None = None,
    recipient: str | None = None,
    dedupe: str | None = None,
) -> Event | None:
    """Writes one event of `send` (arguments as build() takes them) and counts it; None when
    `dedupe` was recorded before."""
    event = build(
        send=send,
        type=type,
        message=message,
        data=data,
        occurred_at=occurred_at,
        recipient=recipient,
        dedupe=dedupe,
    )
    # Atomic with the caller's transaction when there is one (no savepoint on the send path).
    with transaction.atomic(savepoint=False):
        if dedupe is None:
            event.save(force_insert=True)
        else:
            try:
                # A savepoint of its own: a repeated provider event must not break the
                # caller's transaction.
                with transaction.atomic():
                    event.save(force_insert=True)
            except IntegrityError:
                return None
        _bump(send.organization_id, event.occurred_at, _counter_names(event, send))
        _suppress([event])
        announce(event)
    return event


def plain_counter(event: Event) -> str:
    """The one counter of an event whose recording does nothing else (no first-open or
    first-click mark, no suppression, no dedupe key): the send path's `sent`, `failed` and
    `dropped`, which sends/sql.py writes with the send's other rows in one statement."""
    if event.type not in (Type.SENT, Type.FAILED, Type.DROPPED) or event.dedupe_key:
        raise ValueError(f"{event.type} is not recorded in one statement")
    return _COUNTER[event.type]


def announce(event: Event) -> None:
    """Listeners (outbound webhooks) hear of a stored event once it is committed; a failing
    listener is logged by Django and never breaks the caller."""
    transaction.on_commit(partial(event_recorded.send, sender=Event, event=event), robust=True)


# Rows of one INSERT, and ids of one read back, in record_many: a bounded statement size. On
# SQLite Django cuts the INSERT further (999 parameters, about 90 events).
BULK_ROWS = 500


def record_many(events: Sequence[Event]) -> list[Event]:
    """Writes `events` (made by build()) as record() writes one, in a bounded number of
    statements: the new ones, in order. An event whose `dedupe` was recorded before, by anyone
    or earlier in `events`, is left out.

    For each BULK_ROWS events: one INSERT that skips what the dedupe key's unique index holds
    already (ON CONFLICT DO NOTHING: on PostgreSQL a concurrent writer of the same key is
    waited for, then skipped), and one read of which of these ids were inserted. Then one
    counter upsert and, for hard bounces and complaints, one insert of suppressions and one of
    their log. Opens and clicks set the send's first-open and first-click marks one by one:
    record() them.
    """
    if any(event.type in (Type.OPENED, Type.CLICKED) for event in events):
        raise ValueError("record_many() does not take opens or clicks: use record()")
    keys: set[str] = set()
    candidates = []
    for event in events:
        if event.dedupe_key is not None:
            if event.dedupe_key in keys:
                continue
            keys.add(event.dedupe_key)
        candidates.append(event)
    if not candidates:
        return []
    with transaction.atomic():
        Event.objects.bulk_create(candidates, batch_size=BULK_ROWS, ignore_conflicts=True)
        # bulk_create cannot say which rows a conflict skipped: the ids this call made and
        # that are in the table now are the new events (a skipped row's id is in no row).
        inserted: dict[str, int] = {}
        for start in range(0, len(candidates), BULK_ROWS):
            chunk = [event.public_id for event in candidates[start : start + BULK_ROWS]]
            inserted.update(
                Event.objects.filter(public_id__in=chunk).values_list("public_id", "pk")
            )
        new = [event for event in candidates if event.public_id in inserted]
        for event in new:
            event.pk = inserted[event.public_id]
            event._state.adding = False
            event._state.db = Event.objects.db
        _add_counts(
            Counter(
                (event.organization_id, hour_of(event.occurred_at), _COUNTER[event.type])
                for event in new
            )
        )
        _suppress(new)
        for event in new:
            announce(event)
    return new


def _suppress(events: Sequence[Event]) -> None:
    """A hard bounce or a complaint puts the address on the suppression list for all mail."""
    causes = []
    for event in events:
        if event.type == Type.BOUNCED and event.data.get("bounceType") == "hard":
            reason = Suppression.Reason.HARD_BOUNCE
        elif event.type == Type.COMPLAINED:
            reason = Suppression.Reason.COMPLAINT
        else:
            continue
        address = event.data.get("to") or address_of(event.send.to)
        causes.append(
            contacts_services.EventCause(
                organization_id=event.organization_id,
                address=address,
                reason=reason,
                event_id=event.public_id,
            )
        )
    if causes:
        contacts_services.suppress_for_events(causes)


def envelope(event: Event) -> dict:
    """The event as every reader shows it (SPEC section 7). Reads event.send and event.message:
    select_related("send", "message") them when showing many."""
    send = event.send
    message = event.message
    data = {
        "sendId": send.public_id,
        "providerMessageId": (message.provider_message_id or None) if message else None,
        "to": address_of(send.to),
        "subject": send.subject,
        "metadata": send.metadata,
    }
    data.update(event.data)
    return {
        "id": event.public_id,
        "type": event.type,
        "created": iso(event.occurred_at),
        "data": data,
    }


def _with_code(text: str, data: dict) -> str:
    code, host = data.get("smtpCode"), data.get("mtaHost")
    if code and host:
        return f"{text} (SMTP {code} from {host})"
    return f"{text} (SMTP {code})" if code else text


def sentence(event: dict) -> str:
    """An envelope as one sentence for people (the dashboard and the admin)."""
    data = event["data"]
    reason = data.get("reason") or ""
    kind = event["type"]
    if kind == Type.SENT:
        return "Handed to the provider."
    if kind == Type.DELIVERED:
        answer = data.get("response") or reason
        return f"Delivered; the receiving server answered “{answer}”." if answer else "Delivered."
    if kind == Type.DELAYED:
        return _with_code(f"Delayed: {reason or 'the receiving server deferred it'}", data) + "."
    if kind == Type.BOUNCED:
        bounce = data.get("bounceType") or "unknown"
        return f"Bounced ({bounce} bounce): {reason or 'no diagnostic given'}."
    if kind == Type.COMPLAINED:
        feedback = data.get("feedbackType")
        return (
            f"Marked as spam by the recipient ({feedback})."
            if feedback
            else ("Marked as spam by the recipient.")
        )
    if kind == Type.OPENED:
        return "Opened (most likely by a machine)." if data.get("machine") else "Opened."
    if kind == Type.CLICKED:
        machine = " (most likely by a machine)" if data.get("machine") else ""
        return f"Clicked {data.get('url', 'a link')}{machine}."
    if kind == Type.FAILED:
        return _with_code(f"Failed: {reason or 'the provider refused it'}", data) + "."
    if kind == Type.DROPPED:
        why = data.get("suppressionReason")
        if reason == "suppressed" and why:
            return f"Not sent: the address is on the suppression list ({why.replace('_', ' ')})."
        return f"Not sent: {reason or 'suppressed'}."
    return kind
