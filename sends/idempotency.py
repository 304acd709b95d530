"""Idempotency keys for the send API (SPEC.md section 3, "Idempotency").

1. `claim()` right after the body is parsed, before the rate limit (SPEC's order of checks: a
   replay, 422 or 409 never counts against the cap, and neither does losing a race): an INSERT
   under the unique constraint (organization, key) takes the key; when the key has a record,
   that record answers a replay, a 422 or a 409 by itself. On PostgreSQL both are one
   statement (sends/sql.py: INSERT ... ON CONFLICT DO NOTHING, and the record that holds the
   key); elsewhere a SELECT comes first and the loser of a race gets an IntegrityError. Either
   way the loser re-reads and answers 409 (or replays). Abandoned claims, failed records
   and expired records are taken over by a conditional UPDATE that only one request can win.
2. `release()` when the request ends before the send (429, 400, 503): the record goes back to
   what the claim found, so such answers never use up a key.

A claim is a lease: `locked_at` is the token of the worker that holds it. complete(), fail()
and release() write only while the record is still in progress under that same `locked_at`, so
a worker whose claim was taken over after the lock timeout cannot overwrite the new owner's
answer.

Nothing here holds a lock while the provider is called: every statement runs on its own.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Organization
from fluxomail.api import (
    DeliveryOutcomeUnknown,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    ValidationFailed,
)
from fluxomail.ids import first_id_at
from sends import sql
from sends.models import IdempotencyRecord, Send

MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"
BODY_FIELD = "idempotencyKey"

State = IdempotencyRecord.State

logger = logging.getLogger("fluxomail.idempotency")


@dataclass
class IdempotencyRequest:
    key: str
    fingerprint: str
    endpoint: str


@dataclass
class Replay:
    body: dict


@dataclass
class Claim:
    """A request's hold on its key, and what release() puts back."""

    record: IdempotencyRecord
    # The fields the claim changed, as they were; None: the row is new (or had expired, which
    # is as good as none) and release() deletes it.
    restore: dict | None = None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid idempotency key: {message}", details={field: [message]})


def _check_key(value: str, field: str) -> str:
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise _invalid(field, f"Must be 1 to {MAX_KEY_LENGTH} characters.")
    if not all(" " <= char <= "~" for char in value):
        raise _invalid(field, "Must be printable ASCII characters only.")
    return value


def _unquote(value: str) -> str:
    # The structured-field string form ("abc") of the IETF Idempotency-Key draft.
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def fingerprint(endpoint: str, body: dict) -> str:
    """The endpoint plus a canonical JSON form of the body without `idempotencyKey`."""
    canonical = json.dumps(
        {name: value for name, value in body.items() if name != BODY_FIELD},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def from_request(headers, body: dict, endpoint: str) -> IdempotencyRequest | None:
    """The request's key (header or body field), checked; None when none was given."""
    header = headers.get(HEADER)
    if header is not None:
        header = _check_key(_unquote(header.strip()), HEADER)
    field = body.get(BODY_FIELD)
    if field is not None:
        if not isinstance(field, str):
            raise _invalid(BODY_FIELD, "Must be a string.")
        field = _check_key(field, BODY_FIELD)
    if header is not None and field is not None and header != field:
        raise ValidationFailed(
            "The Idempotency-Key header and the idempotencyKey field differ",
            details={
                HEADER: ["Differs from the idempotencyKey field."],
                BODY_FIELD: ["Differs from the Idempotency-Key header."],
            },
        )
    key = header if header is not None else field
    if key is None:
        return None
    return IdempotencyRequest(key=key, fingerprint=fingerprint(endpoint, body), endpoint=endpoint)


def _expires_at(now):
    return now + timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)


def _lock_cutoff(now):
    return now - timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS)


def replay_body(record: IdempotencyRecord) -> dict:
    return {**record.response_body, "reused": True}


def answer_existing(record: IdempotencyRecord, request: IdempotencyRequest) -> Replay | None:
    """Replay, 422 or 409 for a live record; None when the caller may take the record over."""
    now = timezone.now()
    if record.expires_at <= now:
        return None
    if record.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused()
    if record.state == State.COMPLETED:
        if record.response_status != 200:
            # An uncertain delivery (complete(status=500)): that answer stands, nothing is sent.
            raise DeliveryOutcomeUnknown(
                extra=record.response_body, headers={"Idempotency-Replayed": "true"}
            )
        return Replay(replay_body(record))
    if record.state == State.IN_PROGRESS and (
        record.locked_at is None or record.locked_at >= _lock_cutoff(now)
    ):
        raise IdempotencyInProgress()
    return None


def lookup(organization: Organization, request: IdempotencyRequest) -> IdempotencyRecord | None:
    """The record of this key (live or not), with its Send, in one SELECT."""
    return (
        IdempotencyRecord.objects.select_related("send")
        .filter(organization=organization, key=request.key)
        .first()
    )


def claim(organization: Organization, request: IdempotencyRequest) -> Claim | Replay:
    """Takes the key for this request, or answers as an earlier request with it dictates.

    Returns the claim (its record's `send` is set when a failed or abandoned attempt already
    created one) or a Replay; raises 409/422 (or replays a 500) when another request holds or
    used the key.
    """
    now = timezone.now()
    fresh = IdempotencyRecord(
        organization=organization,
        key=request.key,
        endpoint=request.endpoint,
        fingerprint=request.fingerprint,
        state=State.IN_PROGRESS,
        locked_at=now,
        created_at=now,
        expires_at=_expires_at(now),
    )
    if sql.enabled():
        # PostgreSQL: the claim and, when the key is taken, its record in one statement.
        claimed, record = sql.claim(fresh)
        if claimed:
            return Claim(fresh)
        if record is None:
            return _answer_loser(organization, request)
    else:
        record = lookup(organization, request)
    if record is not None:
        answer = answer_existing(record, request)
        if answer is not None:
            return answer
        now = timezone.now()
    if record is None:
        record = fresh
        try:
            if connection.in_atomic_block:
                # Inside a caller's transaction a failed INSERT must roll back to a savepoint;
                # in production (autocommit) it is a single statement and needs none.
                with transaction.atomic():
                    record.save(force_insert=True)
            else:
                record.save(force_insert=True)
        except IntegrityError:
            return _answer_loser(organization, request)
        return Claim(record)

    queryset = IdempotencyRecord.objects.filter(pk=record.pk)
    lease = _fresh_lease(now, record.locked_at)
    restore = None
    if record.expires_at <= now:
        # Expired: the key may be used afresh, as if the record did not exist.
        won = queryset.filter(expires_at__lte=now).update(
            endpoint=request.endpoint,
            fingerprint=request.fingerprint,
            state=State.IN_PROGRESS,
            locked_at=lease,
            send=None,
            response_status=None,
            response_body=None,
            created_at=now,
            expires_at=_expires_at(now),
        )
        record.send = None
        record.created_at = now
    elif record.state == State.FAILED:
        won = queryset.filter(state=State.FAILED).update(state=State.IN_PROGRESS, locked_at=lease)
        restore = {"state": State.FAILED, "locked_at": record.locked_at}
    else:
        # An abandoned claim: its worker died or hung past the lock timeout.
        won = queryset.filter(
            state=State.IN_PROGRESS, locked_at=record.locked_at, locked_at__lt=_lock_cutoff(now)
        ).update(locked_at=lease)
        restore = {"locked_at": record.locked_at}
        if won and record.send is None:
            # The worker may have died after storing its Send: retry on that Send (same sendId)
            # rather than create a second one. Only takeovers pay for this query.
            record.send = _abandoned_send(organization, request, record)
    if not won:
        return _answer_loser(organization, request)
    record.state, record.locked_at = State.IN_PROGRESS, lease
    return Claim(record, restore)


def release(claim: Claim) -> None:
    """Gives the key back as claim() found it (the request ended before the send)."""
    held = _held(claim.record)
    if claim.restore is None:
        held.delete()
    else:
        held.update(**claim.restore)


def _fresh_lease(now, previous):
    """A locked_at no earlier holder can have: `now`, or just after the previous lease."""
    if previous is not None and previous >= now:
        return previous + timedelta(microseconds=1)
    return now


def _abandoned_send(
    organization: Organization, request: IdempotencyRequest, record: IdempotencyRecord
) -> Send | None:
    return (
        Send.objects.filter(
            organization=organization,
            # Ids sort by creation time: an index on public_id bounds the scan
            # to the sends made since the claim, however many the organization has.
            public_id__gte=first_id_at("sends", record.created_at),
            idempotency_key=request.key,
            created_at__gte=record.created_at,
        )
        .order_by("created_at", "pk")
        .first()
    )


def _answer_loser(organization: Organization, request: IdempotencyRequest) -> Replay:
    record = lookup(organization, request)
    if record is not None:
        answer = answer_existing(record, request)
        if answer is not None:
            return answer
    # Someone else holds the key (or took it over a moment ago).
    raise IdempotencyInProgress()


def _held(record: IdempotencyRecord):
    """The record, if this worker's lease on it still holds (see the module docstring)."""
    return IdempotencyRecord.objects.filter(
        pk=record.pk, state=State.IN_PROGRESS, locked_at=record.locked_at
    )


def complete(record: IdempotencyRecord, send: Send, body: dict, status: int = 200) -> bool:
    """Stores the answer to replay; False (and nothing written) when the lease was lost.

    A 500 is stored only when delivery was uncertain: retries get it again and send nothing."""
    updated = _held(record).update(
        state=State.COMPLETED, send=send, response_status=status, response_body=body, locked_at=None
    )
    if not updated:
        lease_lost(record, "answer")
    return bool(updated)


def fail(record: IdempotencyRecord, send: Send | None) -> bool:
    """Marks the key retryable; False (and nothing written) when the lease was lost."""
    updated = _held(record).update(
        state=State.FAILED, send=send, response_status=500, locked_at=None
    )
    if not updated:
        lease_lost(record, "failure")
    return bool(updated)


def lease_lost(record: IdempotencyRecord, what: str) -> None:
    logger.warning("idempotency claim %s was taken over; %s not stored", record.pk, what)


def purge_expired(now=None) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
