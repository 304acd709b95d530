"""POST /api/v1/contacts/sync: up to 1,000 contacts from a source system (SPEC.md section 10).

Bounded by construction: the list's length is checked before any row is read, every row is
validated on its own (a bad row is reported, the others go on), the rows' contacts, seen
event ids, categories and suppressions are each read with one query for the whole batch, and
the rows are applied in memory and written with one bulk statement per table and kind of
change (SQLite's 999 parameters cut some into a few): about 15 statements for 1,000 rows on
PostgreSQL (statements per row made 1,000 rows take 8.5 to 30 s through gunicorn). The batch is
one transaction: an Idempotency-Key is claimed inside it (an INSERT under its unique
constraint), so a concurrent retry waits for the first and replays its answer, and a failed
batch leaves neither rows nor a used key behind.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from accounts.models import Organization
from contacts import services
from contacts.fields import StrictBooleanField, StrictCharField, refuse_unknown
from contacts.models import ALL_MAIL, Category, Contact, Subscription, SyncEvent, SyncRequest
from fluxomail.addresses import normalize
from fluxomail.api import IdempotencyInProgress, IdempotencyKeyReused, ValidationFailed
from fluxomail.ids import new_id
from fluxomail.times import iso, parse_moment

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_CONTACTS = 1000
MAX_METADATA_KEYS = 20
TOP_LEVEL = {"source", "contacts"}
UNSTORABLE = "Must not contain NUL or unpaired surrogate characters."
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """False for text PostgreSQL cannot store (NUL; lone surrogates cannot be encoded)."""
    return _UNSTORABLE.search(text) is None


class _Moment(serializers.Field):
    """ISO 8601 (no offset: UTC) or epoch milliseconds, as a number or a string of digits."""

    default_error_messages = {"invalid": "Must be an ISO 8601 date-time or epoch milliseconds."}

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        moment = parse_moment(data.strip()) if isinstance(data, str) and len(data) <= 40 else None
        if moment is None:
            self.fail("invalid")
        return moment


class _Categories(serializers.Field):
    """A list of category keys (subscribed to each) or an object of key to true/false."""

    default_error_messages = {
        "invalid": "Must be a list of category keys or an object of key to true/false."
    }

    def to_internal_value(self, data) -> dict[str, bool]:
        if isinstance(data, list) and all(isinstance(key, str) for key in data):
            data = dict.fromkeys(data, True)
        if not isinstance(data, dict) or not all(
            isinstance(key, str) and isinstance(on, bool) for key, on in data.items()
        ):
            self.fail("invalid")
        if len(data) > 100:
            raise serializers.ValidationError("At most 100 categories.")
        return data


def _optional_text(max_length: int) -> StrictCharField:  # noqa: N802 (reads as a field class)
    """An optional string; null reads as empty."""
    return StrictCharField(max_length=max_length, allow_blank=True, allow_null=True, required=False)


class ContactRow(serializers.Serializer):
    email = StrictCharField(max_length=320)
    externalId = _optional_text(max_length=255)  # noqa: N815 (wire names)
    name = _optional_text(max_length=200)
    plan = _optional_text(max_length=100)
    state = _optional_text(max_length=100)
    subscribed = StrictBooleanField(required=False)
    deleted = StrictBooleanField(required=False)
    sourceUpdatedAt = _Moment(required=False, allow_null=True)  # noqa: N815
    planStartedAt = _Moment(required=False, allow_null=True)  # noqa: N815
    planEndsAt = _Moment(required=False, allow_null=True)  # noqa: N815
    categories = _Categories(required=False)
    metadata = serializers.DictField(required=False)
    eventId = StrictCharField(required=False, max_length=255)  # noqa: N815

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"contact": ["Expected an object."]})
        refuse_unknown(self, data)
        return super().to_internal_value(data)

    def validate_email(self, value: str) -> str:
        try:
            address = normalize(value)
            validate_email(address)
        except (ValueError, DjangoValidationError):
            raise serializers.ValidationError("Enter a valid email address.") from None
        return address

    def validate_metadata(self, value: dict) -> dict:
        if len(value) > MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys.")
        for key, item in value.items():
            if not 1 <= len(key) <= 40:
                raise serializers.ValidationError("Keys must be 1 to 40 characters.")
            if not (item is None or isinstance(item, bool | int | float | str)):
                raise serializers.ValidationError("Values must be strings, numbers or booleans.")
            if isinstance(item, str) and len(item) > 500:
                raise serializers.ValidationError("String values must be at most 500 characters.")
            if not (storable(key) and (not isinstance(item, str) or storable(item))):
                raise serializers.ValidationError(UNSTORABLE)
        return value


# Row fields written to the contact as they are (wire name: model field).
_FIELDS = {
    "externalId": "external_id",
    "name": "name",
    "plan": "plan",
    "state": "state",
    "planStartedAt": "plan_started_at",
    "planEndsAt": "plan_ends_at",
    "metadata": "metadata",
    "sourceUpdatedAt": "source_updated_at",
}
_TEXT = {"external_id", "name", "plan", "state"}  # null clears them to ""


def _row_error(row, errors: dict) -> dict:
    email = row.get("email") if isinstance(row, dict) else None
    message = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in errors.items())
    # Echoed as the client sent it, but printable: the answer is stored as jsonb for replays,
    # and PostgreSQL's jsonb refuses a NUL (and no control character belongs in an address).
    shown = email if isinstance(email, str) else ""
    shown = "".join(
        "\ufffd" if ord(char) < 32 or 127 <= ord(char) < 160 else char for char in shown
    )
    return {"email": shown[:320], "message": message}


def _idempotency_key(header: str | None) -> str | None:
    """The header's key, unquoted (structured-field form) and checked as SPEC section 3 says."""
    if header is None:
        return None
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 1 <= len(key) <= 255 or not all(" " <= char <= "~" for char in key):
        raise ValidationFailed(
            "Invalid idempotency key",
            details={IDEMPOTENCY_HEADER: ["Must be 1 to 255 printable ASCII characters."]},
        )
    return key


def _fingerprint(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check(body) -> tuple[str, list]:
    """The body's shape, the list's length first: no row is read for a list that is too long."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            "The body must be a JSON object", details={"body": ["Expected a JSON object."]}
        )
    contacts = body.get("contacts")
    if not isinstance(contacts, list) or not 1 <= len(contacts) <= MAX_CONTACTS:
        raise ValidationFailed(
            "Invalid fields: contacts",
            details={"contacts": [f"Expected a list of 1 to {MAX_CONTACTS} contacts."]},
        )
    details = {name: ["Unknown field."] for name in sorted(set(body) - TOP_LEVEL)}
    source = body.get("source")
    if not isinstance(source, str) or not 1 <= len(source.strip()) <= 100:
        details["source"] = ["Required: the name of the source system, 1 to 100 characters."]
    elif not storable(source):
        details["source"] = [UNSTORABLE]
    if details:
        raise ValidationFailed(f"Invalid fields: {', '.join(sorted(details))}", details=details)
    return source.strip(), contacts


@dataclass
class Result:
    body: dict
    key: str | None = None
    replayed: bool = False


def run(*, organization: Organization, body, idempotency_header: str | None) -> Result:
    """Applies a sync request; raises 400/409/422 as SPEC section 10 says."""
    key = _idempotency_key(idempotency_header)
    source, rows = _check(body)
    if key is None and not all(
        isinstance(row, dict) and isinstance(row.get("eventId"), str) and row["eventId"]
        for row in rows
    ):
        message = "An Idempotency-Key header, or an eventId on every contact, is required"
        raise ValidationFailed(
            message,
            details={
                IDEMPOTENCY_HEADER: ["Required unless every contact has an eventId."],
                "contacts": ["Every contact needs an eventId when no Idempotency-Key is sent."],
            },
        )
    if key is None:
        with transaction.atomic():
            return Result(_apply(organization, source, rows))
    fingerprint = _fingerprint(body)
    replay = _replay(organization, key, fingerprint)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            _claim(organization, key, fingerprint)
            answer = _apply(organization, source, rows)
            SyncRequest.objects.filter(organization=organization, key=key).update(
                response_body=answer
            )
    except IntegrityError:
        # Another request with this key committed first (on PostgreSQL this one waited for
        # it at the INSERT): answer as it did.
        replay = _replay(organization, key, fingerprint)
        if replay is None:
            raise IdempotencyInProgress() from None
        return replay
    return Result(answer, key=key)


def _replay(organization: Organization, key: str, fingerprint: str) -> Result | None:
    record = SyncRequest.objects.filter(
        organization=organization, key=key, expires_at__gt=timezone.now()
    ).first()
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if record.response_body is None:
        raise IdempotencyInProgress()
    return Result({**record.response_body, "replayed": True}, key=key, replayed=True)


def _claim(organization: Organization, key: str, fingerprint: str) -> None:
    now = timezone.now()
    # An expired record gives its key back (SPEC section 3: then the key may be used afresh).
    SyncRequest.objects.filter(organization=organization, key=key, expires_at__lte=now).delete()
    SyncRequest.objects.create(
        organization=organization,
        key=key,
        fingerprint=fingerprint,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS),
    )


def purge_expired(now=None) -> int:
    deleted, _ = SyncRequest.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def _apply(organization: Organization, source: str, rows: list) -> dict:
    """Applies the rows in order, as if one by one, and writes the outcome in bulk.

    Reads (one query each): the rows' stored contacts, their seen event ids, the categories,
    and (contacts.services.mirror_many) their `unsubscribe` suppressions. The rows are then
    applied to these in memory, where a later row sees what an earlier one did (a contact
    created, changed or deleted, a newer `sourceUpdatedAt`, an event id); _Batch.write()
    stores the end state with a bounded number of statements.
    """
    now = timezone.now()
    counts = dict.fromkeys(
        ["created", "updated", "failed", "skippedStale", "skippedDuplicate"], 0
    ) | {"unsubscribed": 0, "resubscribed": 0}
    errors: list[dict] = []
    valid = []
    for row in rows:
        serializer = ContactRow(data=row)
        if serializer.is_valid():
            valid.append(serializer.validated_data)
        else:
            counts["failed"] += 1
            errors.append(_row_error(row, serializer.errors))
    stored = {
        c.email: c
        for c in Contact.objects.for_org(organization).filter(email__in={r["email"] for r in valid})
    }
    seen = set(
        SyncEvent.objects.filter(
            organization=organization,
            event_id__in=[r["eventId"] for r in valid if "eventId" in r],
        ).values_list("event_id", flat=True)
    )
    categories = {c.key: c for c in Category.objects.for_org(organization)}
    batch = _Batch(organization, now, contacts=dict(stored))

    for row in valid:
        event_id = row.get("eventId")
        if event_id is not None and event_id in seen:
            counts["skippedDuplicate"] += 1
            continue
        unknown = [k for k in row.get("categories", {}) if k not in categories]
        if unknown:
            counts["failed"] += 1
            errors.append({"email": row["email"], "message": f"Unknown category {unknown[0]!r}."})
            continue
        if event_id is not None:
            batch.event_ids.append(event_id)
            seen.add(event_id)
        email = row["email"]
        contact = batch.contacts.get(email)
        stamp = row.get("sourceUpdatedAt")
        if contact is not None and stamp and contact.source_updated_at:
            if stamp < contact.source_updated_at:
                counts["skippedStale"] += 1
                continue
        if row.get("deleted"):
            if contact is not None:
                # The contact goes; its suppressions stay (they belong to the address).
                batch.delete(email)
                counts["updated"] += 1
            continue
        created = contact is None
        if created:
            contact = batch.create(email)
        for wire, name in _FIELDS.items():
            if wire in row:
                value = row[wire]
                setattr(contact, name, "" if value is None and name in _TEXT else value)
        contact.source = source[:100]
        contact.updated_at = now
        batch.touched.add(email)
        # The preferences, as contacts.services.set_preferences applies them.
        subscribed = row.get("subscribed")
        if subscribed is not None:
            if subscribed != contact.subscribed:
                counts["unsubscribed"] += not subscribed
                counts["resubscribed"] += subscribed
                contact.subscribed = subscribed
            batch.mirror(email, ALL_MAIL, subscribed)
        for key, on in row.get("categories", {}).items():
            batch.subscribe(email, categories[key], on)
            batch.mirror(email, key, on)
        counts["created" if created else "updated"] += 1
    batch.write(actor=f"sync {source}"[:200], stored=stored)
    return {
        "ok": True,
        "source": source,
        "processed": len(rows),
        **counts,
        "replayed": False,
        "syncedAt": iso(now),
        "errors": errors,
    }


# Contact fields a sync writes to a stored contact (all of them, as Model.save() did; never
# its id, public id, address or creation time).
_UPDATED = [*_FIELDS.values(), "source", "updated_at", "subscribed"]


def _unsaved_copy(contact: Contact) -> Contact:
    return Contact(
        **{
            field.attname: getattr(contact, field.attname)
            for field in Contact._meta.concrete_fields
            if not field.primary_key
        }
    )


class _Batch:
    """A sync's end state, built row by row in memory, and its writes."""

    def __init__(self, organization: Organization, now, contacts: dict[str, Contact]):
        self.organization = organization
        self.now = now
        self.contacts = contacts  # by address: the contact as the rows so far left it
        self.event_ids: list[str] = []
        self.touched: set[str] = set()  # addresses whose contact a row wrote
        # By address: the subscriptions of the address's current contact (a contact deleted
        # in the batch takes its own along).
        self.subscriptions: dict[str, dict[Category, bool]] = {}
        # (address, scope) → subscribed: the suppression list follows the last choice.
        self.choices: dict[tuple[str, str], bool] = {}

    def create(self, email: str) -> Contact:
        contact = Contact(
            public_id=new_id("contacts"),
            organization=self.organization,
            email=email,
            created_at=self.now,
        )
        self.contacts[email] = contact
        return contact

    def delete(self, email: str) -> None:
        del self.contacts[email]
        self.subscriptions.pop(email, None)

    def subscribe(self, email: str, category: Category, on: bool) -> None:
        self.subscriptions.setdefault(email, {})[category] = on

    def mirror(self, email: str, scope: str, subscribed: bool) -> None:
        self.choices.pop((email, scope), None)  # keeps the choices in the order last made
        self.choices[(email, scope)] = subscribed

    def write(self, *, actor: str, stored: dict[str, Contact]) -> None:
        """The end state in a bounded number of statements (Django cuts each bulk statement to
        SQLite's 999 parameters; PostgreSQL takes each in one)."""
        final = self.contacts
        SyncEvent.objects.bulk_create(
            [
                SyncEvent(organization=self.organization, event_id=event_id, created_at=self.now)
                for event_id in self.event_ids
            ]
        )
        # A stored contact that is no longer the address's contact was deleted (and perhaps
        # created anew): it goes first, so that its address is free for the new one.
        gone = [c.pk for email, c in stored.items() if final.get(email) is not c]
        if gone:
            Contact.objects.filter(pk__in=gone).delete()
        # New and changed contacts in one upsert on (organization, email): a plain INSERT
        # whose conflicts update the stored row (bulk_update's CASE per row and field took
        # seconds of Python for 1,000 rows). A stored contact goes in as a copy without its
        # id; a new one gets its id back.
        written = [
            c if c.pk is None else _unsaved_copy(c)
            for email, c in final.items()
            if email in self.touched
        ]
        Contact.objects.bulk_create(
            written,
            update_conflicts=True,
            unique_fields=["organization", "email"],
            update_fields=_UPDATED,
        )
        Subscription.objects.bulk_create(
            [
                Subscription(
                    contact=final[email], category=category, subscribed=on, updated_at=self.now
                )
                for email, chosen in self.subscriptions.items()
                for category, on in chosen.items()
            ],
            update_conflicts=True,
            unique_fields=["contact", "category"],
            update_fields=["subscribed", "updated_at"],
        )
        services.mirror_many(self.organization.pk, self.choices, actor)
