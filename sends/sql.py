"""The send path's raw SQL on PostgreSQL (issue 15): one statement where the ORM needs several.

- `claim()`: the idempotency claim and, when the key is taken, the record that holds it, in one
  round trip (replaces `lookup()`'s SELECT followed by the ORM INSERT of the claim).
- `insert_send()`: the send's row (replaces `Send.save(force_insert=True)`: the same INSERT,
  without the ORM's save machinery, signals and SQL compiler on every send);
  `insert_send_unless_held()`: the suppression check and, when it finds nothing, the send's
  row, in one round trip (replaces the check's SELECT followed by that INSERT).
- `settle()`: everything written once the outcome of a send is known, in one data-modifying
  statement (replaces BEGIN, the INSERT of the attempt, its provider ids, the INSERT of the
  event, the event counter's upsert, the UPDATE of the send's status, the UPDATE of the
  idempotency record's answer, and COMMIT).
- `enqueue()`: queue mode's accept, the send, its job and the key's answer in one statement
  (replaces BEGIN, the INSERT of the send, the UPDATE of its status, the INSERT of the job,
  the UPDATE of the idempotency record's answer, and COMMIT).

A statement is atomic in autocommit: every row of `settle()` is written, or none, as the ORM's
transaction did, with one commit. These statements need data-modifying statements in WITH
(and RETURNING), which SQLite lacks; `enabled()` says when to use them, and the callers
(sends/idempotency.py, sends/services.py, sends/queue.py) keep the ORM statements for the other
databases. The same
tests cover both.

The rows come from the models (`Model._meta`, each field's own conversion to and from the
database), so a field added to a model is written and read here as the ORM would.
"""

import functools
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import CharField, Field, Model, TextField
from django.utils import timezone

from fluxomail import prepared
from fluxomail.prepared import Params
from sends import events
from sends.models import (
    Event,
    EventCounter,
    IdempotencyRecord,
    Message,
    ProviderMessageId,
    QueuedSend,
    Send,
)

State = IdempotencyRecord.State


def enabled() -> bool:
    return connection.vendor == "postgresql"


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: type[Model]) -> str:
    return _quote(model._meta.db_table)


@cache
def _fields(model: type[Model], *, with_pk: bool = False) -> tuple[Field, ...]:
    return tuple(f for f in model._meta.concrete_fields if with_pk or not f.primary_key)


def _columns(fields: tuple[Field, ...]) -> str:
    return ", ".join(_quote(f.column) for f in fields)


def _field(model: type[Model], name: str) -> Field:
    return model._meta.get_field(name)


_record_field = functools.partial(_field, IdempotencyRecord)


def _execute(cursor, statement: tuple[str, list[str]], params: list) -> None:
    """Runs one of this module's statements, (text, parameter types), prepared once per
    connection (fluxomail.prepared)."""
    sql, types = statement
    prepared.execute(cursor, sql, params, types)


def _is_text(field: Field) -> bool:
    """Whether the field is Django's own CharField or TextField conversion: a str is saved as
    it is (Field.get_db_prep_save → CharField.get_prep_value → to_python)."""
    kind = type(field)
    return (
        kind.get_db_prep_save is Field.get_db_prep_save
        and kind.get_db_prep_value is Field.get_db_prep_value
        and any(
            kind.get_prep_value is base.get_prep_value and kind.to_python is base.to_python
            for base in (CharField, TextField)
        )
    )


@cache
def _text_fields(model: type[Model]) -> frozenset[str]:
    return frozenset(f.attname for f in model._meta.concrete_fields if _is_text(f))


def _values(instance: Model, fields: tuple[Field, ...] | list[Field]) -> list:
    """The instance's values as the ORM's INSERT sends them (a str of a text field needs no
    conversion: skipped, as it is most of the row and most of this function's time)."""
    db = connections[DEFAULT_DB_ALIAS]  # `connection` is a proxy: resolved once, not per field
    text = _text_fields(type(instance))
    values = []
    for field in fields:
        value = getattr(instance, field.attname)
        if not (field.attname in text and type(value) is str):
            value = field.get_db_prep_save(value, db)
        values.append(value)
    return values


@cache
def _converters(model: type[Model], fields: tuple[Field, ...]) -> tuple:
    """Each field's column and the converters of its value as read, as the ORM's SELECT finds
    them: the same for every row (one database per process on this path)."""
    table = model._meta.db_table
    plan = []
    for field in fields:
        column = field.get_col(table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        plan.append((column, tuple(converters)))
    return tuple(plan)


def _load(model: type[Model], fields: tuple[Field, ...], values) -> Model:
    """A model instance from raw column values, converted as the ORM's SELECT converts them
    (jsonb text into Python, for instance)."""
    converted = []
    for (column, converters), value in zip(_converters(model, fields), values, strict=True):
        for converter in converters:
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def _saved(instance: Model, pk: int) -> None:
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias


# --- the claim -------------------------------------------------------------------------------


# The statements' texts depend only on the models: each is built once per process.
@cache
def _claim_sql() -> tuple[str, list[str]]:
    # Replaces: SELECT the record of (organization, key), then INSERT the claim (and, after an
    # IntegrityError, SELECT it again). ON CONFLICT DO NOTHING never raises, so no savepoint
    # is needed inside a caller's transaction either. The SELECT reads the statement's
    # snapshot: a record committed by a concurrent claim after it was taken is not in it (the
    # claim then returns neither row, and the caller reads again).
    table = _table(IdempotencyRecord)
    inserted = _fields(IdempotencyRecord)
    stored = _fields(IdempotencyRecord, with_pk=True)
    record = _record_field
    p = Params(connection)
    sql = (
        f"WITH claim AS ("
        f" INSERT INTO {table} ({_columns(inserted)})"
        f" VALUES ({p.fields(inserted)})"
        f" ON CONFLICT ({_quote('organization_id')}, {_quote('key')}) DO NOTHING"
        f" RETURNING {_quote('id')}"
        f") SELECT claim.{_quote('id')}, "
        + ", ".join(f"held.{_quote(f.column)}" for f in stored)
        + f" FROM (SELECT 1) AS one LEFT JOIN claim ON true"
        f" LEFT JOIN {table} AS held"
        f" ON held.{_quote('organization_id')} = {p.field(record('organization'))}"
        f" AND held.{_quote('key')} = {p.field(record('key'))}"
    )
    return sql, p.types


def claim(record: IdempotencyRecord) -> tuple[bool, IdempotencyRecord | None]:
    """Inserts the unsaved claim `record` unless its key has a record.

    Returns (True, None) when the claim was inserted (`record` is then saved), (False, the
    record that holds the key) when one was there, and (False, None) when a concurrent
    request's record committed while this statement ran (read it again to answer).
    """
    stored = _fields(IdempotencyRecord, with_pk=True)
    with connection.cursor() as cursor:
        _execute(
            cursor,
            _claim_sql(),
            [
                *_values(record, _fields(IdempotencyRecord)),
                record.organization_id,
                record.key,
            ],
        )
        claimed_id, *held = cursor.fetchone()
    if claimed_id is not None:
        _saved(record, claimed_id)
        return True, None
    if held[0] is None:
        return False, None
    return False, _load(IdempotencyRecord, stored, held)


# --- the send ----------------------------------------------------------------------------


@cache
def _insert_send_sql() -> tuple[str, list[str]]:
    # Replaces Send.save(force_insert=True) in sends.services._create_send: the same INSERT
    # ... RETURNING id that the ORM sends on PostgreSQL (no signal listens to Send's saves).
    fields = _fields(Send)
    p = Params(connection)
    sql = (
        f"INSERT INTO {_table(Send)} ({_columns(fields)})"
        f" VALUES ({p.fields(fields)}) RETURNING {_quote('id')}"
    )
    return sql, p.types


def insert_send(send: Send) -> None:
    """Inserts the unsaved `send` (its public id given); it comes back saved."""
    with connection.cursor() as cursor:
        _execute(cursor, _insert_send_sql(), _values(send, _fields(Send)))
        (send_id,) = cursor.fetchone()
    _saved(send, send_id)


@cache
def _insert_send_unless_held_sql(held: str, held_params: int) -> tuple[str, list[str]]:
    # Replaces the suppression check (contacts.services.screen's SELECT) followed by the send's
    # INSERT, for a send none of whose recipients is held back: the SELECT runs first, in the
    # same snapshot, and the INSERT only when it found nothing. A CTE read twice is
    # materialised: the SELECT runs once.
    # The check's own parameters are typed by their comparisons ("unknown").
    fields = _fields(Send)
    p = Params(connection)
    p.types += ["unknown"] * held_params
    sql = (
        f"WITH held AS ({held}),"
        f" send AS (INSERT INTO {_table(Send)} ({_columns(fields)})"
        f" SELECT {p.fields(fields)} WHERE NOT EXISTS (SELECT 1 FROM held)"
        f" RETURNING {_quote('id')})"
        f" SELECT (SELECT {_quote('id')} FROM send),"
        f" ARRAY(SELECT address FROM held), ARRAY(SELECT reason FROM held)"
    )
    return sql, p.types


def insert_send_unless_held(send: Send, held: tuple[str, list]) -> list[tuple[str, str]]:
    """Runs the suppression check `held` (contacts.services.screen_query: its SQL and params)
    and inserts the unsaved `send` if it returns no row, in one statement. Returns the rows
    (address, reason); when there are none, `send` comes back saved."""
    query, params = held
    with connection.cursor() as cursor:
        _execute(
            cursor,
            _insert_send_unless_held_sql(query, len(params)),
            [*params, *_values(send, _fields(Send))],
        )
        send_id, addresses, reasons = cursor.fetchone()
    if send_id is not None:
        _saved(send, send_id)
    return list(zip(addresses, reasons, strict=True))


# --- the outcome -----------------------------------------------------------------------------


@cache
def _settle_sql(with_attempt: bool, provider_ids: bool, with_record: bool) -> tuple[str, list[str]]:
    # Replaces, in one statement and one commit (what was BEGIN ... COMMIT around them):
    #   attempt.save()                   INSERT INTO sends_message
    #   attempt.save_provider_ids()      INSERT INTO sends_providermessageid (several ids only)
    #   events.record()                  INSERT INTO sends_event + the EventCounter upsert
    #   send.mark(status)                UPDATE sends_send SET status, updated_at
    #   idempotency.complete()           UPDATE sends_idempotencyrecord ... under the lease
    # Every part of a WITH runs exactly once, whether or not the final SELECT reads it.
    p = Params(connection)
    parts = []
    if with_attempt:
        fields = _fields(Message)
        parts.append(
            f"message AS (INSERT INTO {_table(Message)} ({_columns(fields)})"
            f" VALUES ({p.fields(fields)}) RETURNING {_quote('id')})"
        )
        if provider_ids:
            parts.append(
                f"provider_ids AS (INSERT INTO {_table(ProviderMessageId)}"
                f" ({_quote('message_id')}, {_quote('provider_message_id')})"
                f" SELECT message.{_quote('id')}, value FROM message,"
                f" unnest({p('varchar[]')}) AS value)"
            )
    fields = _fields(Event)
    values = [
        f"(SELECT {_quote('id')} FROM message)"
        if field.attname == "message_id" and with_attempt
        else p.field(field)
        for field in fields
    ]
    parts.append(
        f"event AS (INSERT INTO {_table(Event)} ({_columns(fields)})"
        f" VALUES ({', '.join(values)}) RETURNING {_quote('id')})"
    )
    counter = _table(EventCounter)
    bucket = [_field(EventCounter, name) for name in ("organization", "hour", "name")]
    parts.append(
        f"counter AS (INSERT INTO {counter} ({_quote('organization_id')}, {_quote('hour')},"
        f" {_quote('name')}, {_quote('count')}) VALUES ({p.fields(bucket)}, 1)"
        f" ON CONFLICT ({_quote('organization_id')}, {_quote('hour')}, {_quote('name')})"
        f" DO UPDATE SET {_quote('count')} = {counter}.{_quote('count')} + 1)"
    )
    parts.append(
        f"status AS (UPDATE {_table(Send)}"
        f" SET {_quote('status')} = {p.field(_field(Send, 'status'))},"
        f" {_quote('updated_at')} = {p.field(_field(Send, 'updated_at'))}"
        f" WHERE {_quote('id')} = {p.field(_field(Send, 'id'))})"
    )
    if with_record:
        # sends.idempotency._held(): only while the record is in progress under our lease.
        record = _record_field
        parts.append(
            f"answer AS (UPDATE {_table(IdempotencyRecord)}"
            f" SET {_quote('state')} = {p.field(record('state'))},"
            f" {_quote('send_id')} = {p.field(record('send'))},"
            f" {_quote('response_status')} = {p.field(record('response_status'))},"
            f" {_quote('response_body')} = {p.field(record('response_body'))},"
            f" {_quote('locked_at')} = NULL"
            f" WHERE {_quote('id')} = {p.field(record('id'))}"
            f" AND {_quote('state')} = {p.field(record('state'))}"
            f" AND {_quote('locked_at')} IS NOT DISTINCT FROM {p.field(record('locked_at'))}"
            f" RETURNING {_quote('id')})"
        )
    message_id = f"(SELECT {_quote('id')} FROM message)" if with_attempt else "NULL"
    answered = "(SELECT count(*) FROM answer)" if with_record else "1"
    sql = (
        "WITH "
        + ", ".join(parts)
        + f" SELECT {message_id}, (SELECT {_quote('id')} FROM event), {answered}"
    )
    return sql, p.types


def _provider_ids(attempt: Message) -> list[str]:
    # As Message.save_provider_ids(): rows only when the provider gave several ids.
    ids = attempt.provider_message_id.split(",")
    if len(ids) < 2:
        return []
    return [value for value in ids if len(value) <= ProviderMessageId.ID_MAX_LENGTH]


def settle(
    *,
    send: Send,
    status: str,
    event: Event,
    attempt: Message | None = None,
    record: IdempotencyRecord | None = None,
    body: dict | None = None,
    response_status: int = 200,
) -> bool:
    """Writes the outcome of `send` in one statement: the attempt (if any) and its provider
    ids, `event` (built by sends.events.build) and its counter, the send's `status`, and
    `body` as the record's answer while the record's lease holds.

    Returns False when the record's lease was lost (its answer is not stored; the other rows
    are), True otherwise. The instances come back saved; the caller announces the event.
    """
    counter = events.plain_counter(event)
    ids = _provider_ids(attempt) if attempt is not None else []
    params: list = []
    if attempt is not None:
        params += _values(attempt, _fields(Message))
        if ids:
            params.append(ids)
    params += [
        value
        for field, value in zip(_fields(Event), _values(event, _fields(Event)), strict=True)
        if not (field.attname == "message_id" and attempt is not None)
    ]
    params += [
        send.organization_id,
        connection.ops.adapt_datetimefield_value(events.hour_of(event.occurred_at)),
        counter,
    ]
    updated_at = timezone.now()
    params += [status, connection.ops.adapt_datetimefield_value(updated_at), send.pk]
    if record is not None:
        body_field = IdempotencyRecord._meta.get_field("response_body")
        params += [
            State.COMPLETED,
            send.pk,
            response_status,
            body_field.get_db_prep_save(body, connection),
            record.pk,
            State.IN_PROGRESS,
            connection.ops.adapt_datetimefield_value(record.locked_at),
        ]
    with connection.cursor() as cursor:
        _execute(cursor, _settle_sql(attempt is not None, bool(ids), record is not None), params)
        message_id, event_id, answered = cursor.fetchone()
    if attempt is not None:
        _saved(attempt, message_id)
        event.message = attempt
    _saved(event, event_id)
    send.status, send.updated_at = status, updated_at
    if record is not None and answered:
        record.state, record.send = State.COMPLETED, send
        record.response_status, record.response_body, record.locked_at = (
            response_status,
            body,
            None,
        )
    return bool(answered)


# --- queue mode's accept --------------------------------------------------------------------


@cache
def _enqueue_sql(with_record: bool) -> tuple[str, list[str]]:
    # Replaces, in sends.queue.accept(): BEGIN, INSERT INTO sends_send, UPDATE its status to
    # queued (send.mark), INSERT INTO sends_queuedsend, UPDATE sends_idempotencyrecord with the
    # answer under the lease (idempotency.complete) and COMMIT, or the ROLLBACK of all of it
    # when the lease was lost. Here the lease is read first, locked (FOR UPDATE re-checks it
    # against a concurrent takeover's row), and nothing is inserted without it.
    send_fields = _fields(Send)
    job_fields = [f for f in _fields(QueuedSend) if f.attname != "send_id"]
    record = _record_field
    p = Params(connection)
    parts = []
    if with_record:
        parts.append(
            f"lease AS (SELECT {_quote('id')} FROM {_table(IdempotencyRecord)}"
            f" WHERE {_quote('id')} = {p.field(record('id'))}"
            f" AND {_quote('state')} = {p.field(record('state'))}"
            f" AND {_quote('locked_at')} IS NOT DISTINCT FROM {p.field(record('locked_at'))}"
            f" FOR UPDATE)"
        )
    parts.append(
        f"send AS (INSERT INTO {_table(Send)} ({_columns(send_fields)})"
        f" SELECT {p.fields(send_fields)}"
        + (" WHERE EXISTS (SELECT 1 FROM lease)" if with_record else "")
        + f" RETURNING {_quote('id')})"
    )
    parts.append(
        f"job AS (INSERT INTO {_table(QueuedSend)}"
        f" ({_quote('send_id')}, {_columns(job_fields)})"
        f" SELECT send.{_quote('id')}, {p.fields(job_fields)} FROM send"
        f" RETURNING {_quote('id')})"
    )
    if with_record:
        parts.append(
            f"answer AS (UPDATE {_table(IdempotencyRecord)}"
            f" SET {_quote('state')} = {p.field(record('state'))},"
            f" {_quote('send_id')} = (SELECT {_quote('id')} FROM send),"
            f" {_quote('response_status')} = 200,"
            f" {_quote('response_body')} = {p.field(record('response_body'))},"
            f" {_quote('locked_at')} = NULL"
            f" WHERE {_quote('id')} IN (SELECT {_quote('id')} FROM lease))"
        )
    sql = (
        "WITH "
        + ", ".join(parts)
        + f" SELECT (SELECT {_quote('id')} FROM send), (SELECT {_quote('id')} FROM job)"
    )
    return sql, p.types


def enqueue(*, send: Send, job: QueuedSend, record: IdempotencyRecord | None, body: dict) -> bool:
    """Inserts the unsaved `send` (status queued) and its unsaved `job`, and stores `body` as
    the record's answer, in one statement; False, and nothing written, when the record's lease
    was lost. The instances come back saved."""
    params: list = []
    if record is not None:
        params += [
            record.pk,
            State.IN_PROGRESS,
            connection.ops.adapt_datetimefield_value(record.locked_at),
        ]
    params += _values(send, _fields(Send))
    params += _values(job, [f for f in _fields(QueuedSend) if f.attname != "send_id"])
    if record is not None:
        body_field = IdempotencyRecord._meta.get_field("response_body")
        params += [State.COMPLETED, body_field.get_db_prep_save(body, connection)]
    with connection.cursor() as cursor:
        _execute(cursor, _enqueue_sql(record is not None), params)
        send_id, job_id = cursor.fetchone()
    if send_id is None:
        return False
    _saved(send, send_id)
    job.send = send
    _saved(job, job_id)
    if record is not None:
        record.state, record.send = State.COMPLETED, send
        record.response_status, record.response_body, record.locked_at = 200, body, None
    return True
