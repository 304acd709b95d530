"""The workflows that write suppressions and preferences, and the send path's one check.

Every change to a suppression goes through suppress() or lift() and leaves a SuppressionChange
saying who and why. A recipient's preferences (a contact's `subscribed` flag and its
subscriptions) are mirrored into `unsubscribe` suppressions here and nowhere else, so that the
send path needs to read the suppression list only; hard bounces, complaints and manual
suppressions are separate rows that no preference change or sync ever lifts.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from contacts import sql
from contacts.models import (
    ALL_MAIL,
    Category,
    Contact,
    Subscription,
    Suppression,
    SuppressionChange,
)
from fluxomail.addresses import normalize

Reason = Suppression.Reason
Action = SuppressionChange.Action


def normalized(address: str) -> str | None:
    try:
        return normalize(address)
    except ValueError:
        return None


def _scopes(category: str) -> list[str]:
    return [ALL_MAIL, category] if category else [ALL_MAIL]


def _precedence(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{address: the reason to name} of (address, reason) rows of the suppression list."""
    found: dict[str, set[str]] = {}
    for address, reason in rows:
        found.setdefault(address, set()).add(reason)
    return {
        address: next(r for r in Suppression.PRECEDENCE if r in reasons)
        for address, reasons in found.items()
    }


def held_back(organization_id: int, category: str, addresses: Iterable[str]) -> dict[str, str]:
    """The suppressed ones among normalised `addresses` for mail of `category` (ALL_MAIL for
    transactional mail), each with the reason to name: one query on suppression_unique."""
    return _precedence(
        sql.suppression_reasons(organization_id, _scopes(category), list(dict.fromkeys(addresses)))
    )


@dataclass
class Screening:
    """What a send may deliver: `to_reason` is set when its `to` is held back; `cc` and `bcc`
    are the recipients that may receive it, `left_out` the ones that may not."""

    to_reason: str | None = None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def screen(
    *, organization_id: int, category: str, to: str, cc: list[str], bcc: list[str]
) -> Screening:
    """The send path's check: to, cc and bcc against the suppression list in one query."""
    held = held_back(organization_id, category, _normalized_all(to, cc, bcc))
    return _screened(held, to=to, cc=cc, bcc=bcc)


def screen_query(
    *, organization_id: int, category: str, to: str, cc: list[str], bcc: list[str]
) -> tuple[str, list]:
    """screen()'s SELECT as (sql, params), for a caller that runs it inside a statement of its
    own; screened_rows() turns the (address, reason) rows it returns into the Screening."""
    addresses = list(dict.fromkeys(_normalized_all(to, cc, bcc)))
    return sql.suppression_reasons_query(organization_id, _scopes(category), addresses)


def screened_rows(
    rows: Iterable[tuple[str, str]], *, to: str, cc: list[str], bcc: list[str]
) -> Screening:
    """screen()'s answer from the rows of screen_query()."""
    return _screened(_precedence(rows), to=to, cc=cc, bcc=bcc)


def _normalized_all(to: str, cc: list[str], bcc: list[str]) -> list[str]:
    return [a for a in map(normalized, [to, *cc, *bcc]) if a is not None]


def _screened(held: dict[str, str], *, to: str, cc: list[str], bcc: list[str]) -> Screening:
    if not held:
        return Screening(cc=list(cc), bcc=list(bcc))
    screening = Screening(to_reason=held.get(normalized(to)))
    for recipients, kept in ((cc, screening.cc), (bcc, screening.bcc)):
        for recipient in recipients:
            if normalized(recipient) in held:
                screening.left_out.append(normalized(recipient))
            else:
                kept.append(recipient)
    return screening


def suppress(
    *,
    organization_id: int,
    address: str,
    reason: str,
    actor: str,
    category: str = ALL_MAIL,
    note: str = "",
    source_event: str = "",
    user=None,
) -> Suppression | None:
    """Adds a suppression (logged); None when the address had it already (insert-if-absent)."""
    address = normalize(address)
    with transaction.atomic():
        try:
            with transaction.atomic():
                suppression = Suppression.objects.create(
                    organization_id=organization_id,
                    address=address,
                    category=category,
                    reason=reason,
                    source_event=source_event,
                    actor=actor[:200],
                    note=note[:500],
                )
        except IntegrityError:
            return None
        _log(suppression, Action.ADDED, actor=actor, note=note, user=user)
    return suppression


def lift(suppression: Suppression, *, actor: str, note: str, user=None) -> bool:
    """Removes a suppression (logged); an unsubscribe's removal resubscribes the contact."""
    with transaction.atomic():
        deleted, _ = Suppression.objects.filter(pk=suppression.pk).delete()
        if not deleted:
            return False
        _log(suppression, Action.REMOVED, actor=actor, note=note, user=user)
        if suppression.reason == Reason.UNSUBSCRIBE:
            _resubscribe_contact(suppression)
    return True


def _log(suppression: Suppression, action: str, *, actor: str, note: str, user) -> None:
    SuppressionChange.objects.create(
        organization_id=suppression.organization_id,
        action=action,
        address=suppression.address,
        category=suppression.category,
        reason=suppression.reason,
        source_event=suppression.source_event,
        actor=actor[:200],
        user=user,
        note=note[:500],
    )


def _resubscribe_contact(suppression: Suppression) -> None:
    contacts = Contact.objects.filter(
        organization_id=suppression.organization_id, email=suppression.address
    )
    now = timezone.now()
    if suppression.category == ALL_MAIL:
        contacts.update(subscribed=True, updated_at=now)
    else:
        Subscription.objects.filter(
            contact__in=contacts, category__key=suppression.category
        ).update(subscribed=True, updated_at=now)


@dataclass(frozen=True)
class EventCause:
    """A hard bounce or complaint of the event log, as the suppression list takes it."""

    organization_id: int
    address: str
    reason: str
    event_id: str


def suppress_for_events(causes: Iterable[EventCause]) -> list[Suppression]:
    """Hard bounces and complaints from the event log: all mail to each address stops. The
    first event per organization, address and reason is the cause; an address suppressed for
    that reason before keeps its first cause. One INSERT and one INSERT of the log, whatever
    their number (contacts/sql.py). Returns the suppressions added."""
    now = timezone.now()
    rows = []
    for cause in causes:
        address = normalized(cause.address)
        if address is None:
            continue
        actor = f"event {cause.event_id}"
        rows.append(
            Suppression(
                organization_id=cause.organization_id,
                address=address,
                category=ALL_MAIL,
                reason=cause.reason,
                source_event=cause.event_id,
                actor=actor[:200],
                created_at=now,
            )
        )
    with transaction.atomic(savepoint=False):
        added = sql.insert_suppressions(rows)
        _log_many([(row, Action.ADDED, row.actor, "") for row in added])
    return added


def _log_many(changes: list[tuple[Suppression, str, str, str]]) -> None:
    """_log() for many (suppression, action, actor, note) at once: one INSERT."""
    SuppressionChange.objects.bulk_create(
        [
            SuppressionChange(
                organization_id=suppression.organization_id,
                action=action,
                address=suppression.address,
                category=suppression.category,
                reason=suppression.reason,
                source_event=suppression.source_event,
                actor=actor[:200],
                note=note[:500],
            )
            for suppression, action, actor, note in changes
        ]
    )


def _mirror(
    organization_id: int, address: str, category: str, subscribed: bool, actor: str
) -> None:
    """A preference as the suppression list sees it: an `unsubscribe` row exists iff it is off."""
    if not subscribed:
        suppress(
            organization_id=organization_id,
            address=address,
            reason=Reason.UNSUBSCRIBE,
            category=category,
            actor=actor,
        )
        return
    for suppression in Suppression.objects.filter(
        organization_id=organization_id,
        address=address,
        category=category,
        reason=Reason.UNSUBSCRIBE,
    ):
        with transaction.atomic():
            if Suppression.objects.filter(pk=suppression.pk).delete()[0]:
                _log(suppression, Action.REMOVED, actor=actor, note="resubscribed", user=None)


def mirror_many(organization_id: int, choices: dict[tuple[str, str], bool], actor: str) -> None:
    """_mirror() for many (normalised address, scope) → subscribed choices at once (a contacts
    sync, where the last choice of an address and scope is the one that counts): one read of
    the addresses' `unsubscribe` rows, one INSERT of those to add and one DELETE of those to
    lift (contacts/sql.py: each says exactly what it changed), one INSERT of their log."""
    if not choices:
        return
    addresses = {address for address, _ in choices}
    stored = {
        (row.address, row.category): row
        for row in Suppression.objects.filter(
            organization_id=organization_id, address__in=addresses, reason=Reason.UNSUBSCRIBE
        )
    }
    now = timezone.now()
    to_add = [
        Suppression(
            organization_id=organization_id,
            address=address,
            category=category,
            reason=Reason.UNSUBSCRIBE,
            actor=actor[:200],
            created_at=now,
        )
        for (address, category), subscribed in choices.items()
        if not subscribed and (address, category) not in stored
    ]
    to_lift = [
        stored[scope] for scope, subscribed in choices.items() if subscribed and scope in stored
    ]
    with transaction.atomic(savepoint=False):
        added = sql.insert_suppressions(to_add)
        lifted = sql.delete_suppressions([row.pk for row in to_lift])
        _log_many(
            [(row, Action.ADDED, actor, "") for row in added]
            + [(row, Action.REMOVED, actor, "resubscribed") for row in to_lift if row.pk in lifted]
        )


@dataclass
class PreferenceChange:
    unsubscribed: bool = False  # the global flag went from on to off
    resubscribed: bool = False  # ... from off to on


def set_preferences(
    contact: Contact,
    *,
    actor: str,
    subscribed: bool | None = None,
    categories: dict[Category, bool] | None = None,
) -> PreferenceChange:
    """Applies a recipient's (or a sync's) choices to `contact` and mirrors them into the
    suppression list. Never touches a hard-bounce, complaint or manual suppression."""
    change = PreferenceChange()
    now = timezone.now()
    with transaction.atomic():
        if subscribed is not None:
            if subscribed != contact.subscribed:
                change.unsubscribed, change.resubscribed = not subscribed, subscribed
                contact.subscribed = subscribed
                contact.updated_at = now
                Contact.objects.filter(pk=contact.pk).update(subscribed=subscribed, updated_at=now)
            _mirror(contact.organization_id, contact.email, ALL_MAIL, subscribed, actor)
        for category, on in (categories or {}).items():
            Subscription.objects.update_or_create(
                contact=contact, category=category, defaults={"subscribed": on, "updated_at": now}
            )
            _mirror(contact.organization_id, contact.email, category.key, on, actor)
    return change


def preferences(contact: Contact | None, categories: list[Category]) -> dict:
    """`subscribed` and each category's state; an address without a contact is subscribed to
    everything (its suppressions still apply to sends)."""
    chosen = {}
    if contact is not None:
        chosen = dict(contact.subscriptions.values_list("category_id", "subscribed"))
    return {
        "subscribed": contact.subscribed if contact is not None else True,
        "subscriptions": [
            {"categoryKey": category.key, "subscribed": chosen.get(category.pk, True)}
            for category in categories
        ],
    }


def unsubscribe(*, organization_id: int, address: str, category: str, actor: str) -> None:
    """A recipient's unsubscribe (one-click or the page): the category, or all mail. Creates
    the contact when the address has none, so that its preferences show the choice."""
    address = normalize(address)
    contact, _ = Contact.objects.get_or_create(
        organization_id=organization_id, email=address, defaults={"source": "unsubscribe"}
    )
    if category == ALL_MAIL:
        set_preferences(contact, actor=actor, subscribed=False)
        return
    found = Category.objects.filter(organization_id=organization_id, key=category).first()
    if found is not None:
        set_preferences(contact, actor=actor, categories={found: False})
