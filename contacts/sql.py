"""The contacts app's raw SQL: writes to the suppression list that say exactly what they changed,
and the send path's read of it.

Each statement runs on SQLite (3.35 or later, for RETURNING) and PostgreSQL alike, and is tested
on both (tests/test_contacts_sync.py, tests/test_esp_webhooks.py, tests/test_suppression.py).
"""

from collections.abc import Sequence

from django.db import connection

from contacts.models import Suppression

_INSERTED = ("organization_id", "address", "category", "reason", "source_event", "actor")
_INSERTED += ("note", "created_at")


def suppression_reasons_query(
    organization_id: int, scopes: Sequence[str], addresses: Sequence[str]
) -> tuple[str, list]:
    """The SELECT of suppression_reasons(), as (sql, params), for a statement that runs it
    inside its own (sends/sql.py: the send's INSERT unless a recipient is held back). With no
    addresses, a SELECT of no rows."""
    if not addresses:
        return "SELECT NULL::varchar AS address, NULL::varchar AS reason WHERE false", []
    table = Suppression._meta.db_table
    return (
        f"SELECT address, reason FROM {table} WHERE organization_id = %s"
        f" AND address IN ({', '.join(['%s'] * len(addresses))})"
        f" AND category IN ({', '.join(['%s'] * len(scopes))})",
        [organization_id, *addresses, *scopes],
    )


def suppression_reasons(
    organization_id: int, scopes: Sequence[str], addresses: Sequence[str]
) -> list[tuple[str, str]]:
    """(address, reason) of each suppression of `addresses` in `scopes` (categories, ALL_MAIL
    among them): a range of suppression_unique. No query when `addresses` is empty.

    Replaces contacts.services.held_back()'s `Suppression.objects.filter(organization_id=…,
    address__in=…, category__in=…).values_list("address", "reason")`: the same SELECT, without
    building and compiling a QuerySet on every send (most of the check's CPU).
    """
    if not addresses:
        return []
    with connection.cursor() as cursor:
        cursor.execute(*suppression_reasons_query(organization_id, scopes, addresses))
        return cursor.fetchall()


def insert_suppressions(rows: Sequence[Suppression]) -> list[Suppression]:
    """Adds `rows` (unsaved) to the list; returns those that were added, with their ids. A row
    the list holds already is left out, also when a concurrent transaction adds it first
    (PostgreSQL waits for that one, then skips); of rows with the same (organization, address,
    category, reason), the first is the one added.

    Replaces contacts.services.suppress()'s savepoint, INSERT and IntegrityError per row:
    INSERT … ON CONFLICT DO NOTHING RETURNING names exactly the rows this statement added,
    which bulk_create(ignore_conflicts=True) cannot tell (and a read after it could not tell
    ours from a concurrent writer's), so that only real changes are logged.
    """
    if not rows:
        return []
    by_key: dict[tuple, Suppression] = {}
    for row in rows:
        by_key.setdefault(_key(row.organization_id, row.address, row.category, row.reason), row)
    rows = list(by_key.values())
    table = Suppression._meta.db_table
    columns = [Suppression._meta.get_field(name).column for name in _INSERTED]
    size = connection.ops.bulk_batch_size(columns, rows)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            params: list = []
            for row in chunk:
                params += [
                    row.organization_id,
                    row.address,
                    row.category,
                    row.reason,
                    row.source_event,
                    row.actor,
                    row.note,
                    connection.ops.adapt_datetimefield_value(row.created_at),
                ]
            values = ", ".join([f"({', '.join(['%s'] * len(columns))})"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "
                "ON CONFLICT (organization_id, address, category, reason) DO NOTHING "
                "RETURNING id, organization_id, address, category, reason",
                params,
            )
            for pk, *key in cursor.fetchall():
                row = by_key[_key(*key)]
                row.pk = pk
                row._state.adding = False
    return [row for row in rows if row.pk is not None]


def delete_suppressions(ids: Sequence[int]) -> set[int]:
    """Deletes the suppressions `ids`; returns the ids of those this statement deleted (not
    those a concurrent transaction deleted first).

    Replaces a read and a DELETE per row: DELETE … RETURNING says exactly which rows went,
    which QuerySet.delete()'s count cannot, so that only real changes are logged.
    """
    if not ids:
        return set()
    table = Suppression._meta.db_table
    deleted: set[int] = set()
    size = connection.ops.bulk_batch_size(["id"], ids)
    with connection.cursor() as cursor:
        for start in range(0, len(ids), size):
            chunk = list(ids[start : start + size])
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(chunk))}) RETURNING id",
                chunk,
            )
            deleted.update(pk for (pk,) in cursor.fetchall())
    return deleted


def _key(organization_id: int, address: str, category: str, reason: str) -> tuple:
    return (organization_id, address, category, reason)
