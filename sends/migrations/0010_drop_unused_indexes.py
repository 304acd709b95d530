"""Drops the indexes of the send path's tables that no query uses (issue 15; the EXPLAIN
evidence is in README, "Query budget"):

- sends_send.organization_id and sends_idempotencyrecord.organization_id: the foreign keys'
  own indexes, whose column leads send_org_public_id, send_org_to and idem_org_key;
- the LIKE indexes (varchar_pattern_ops) that PostgreSQL gets for a unique CharField, on
  sends_send.public_id, sends_event.public_id and sends_event.dedupe_key: no query compares
  them with LIKE (ids are matched exactly or by range, which the unique indexes serve).

The unique constraints stay: the fields' `unique=True` becomes a named UniqueConstraint in
Meta (which has no LIKE index), and on PostgreSQL the existing constraint is renamed rather
than rebuilt, so the migration does not scan the sends and events tables. SQLite has no LIKE
indexes and its column UNIQUE is the same constraint: nothing to do there but the FK indexes.
"""

from django.db import migrations, models

# (table, column, constraint name in Meta)
UNIQUE_COLUMNS = [
    ("sends_send", "public_id", "send_public_id"),
    ("sends_event", "public_id", "event_public_id"),
    ("sends_event", "dedupe_key", "event_dedupe_key"),
]


def _unique_constraint(cursor, table: str, column: str) -> str:
    """The name of the one-column unique constraint on table.column (whatever Django named
    it when the column was made)."""
    cursor.execute(
        "SELECT con.conname FROM pg_constraint con"
        " JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]"
        " WHERE con.conrelid = %s::regclass AND con.contype = 'u'"
        " AND array_length(con.conkey, 1) = 1 AND att.attname = %s",
        [table, column],
    )
    (name,) = cursor.fetchone()
    return name


def _like_indexes(cursor, table: str, column: str) -> list[str]:
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = %s AND indexdef LIKE %s",
        [table, f"%({column} varchar_pattern_ops)"],
    )
    return [name for (name,) in cursor.fetchall()]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        for table, column, name in UNIQUE_COLUMNS:
            for index in _like_indexes(cursor, table, column):
                cursor.execute(f"DROP INDEX {quote(index)}")
            old = _unique_constraint(cursor, table, column)
            cursor.execute(
                f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(old)} TO {quote(name)}"
            )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        for table, column, name in UNIQUE_COLUMNS:
            cursor.execute(
                f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(name)}"
                f" TO {quote(f'{table}_{column}_key')}"
            )
            cursor.execute(
                f"CREATE INDEX {quote(f'{table}_{column}_like')} ON {quote(table)}"
                f" ({quote(column)} varchar_pattern_ops)"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_apikey_name_without_controls"),
        ("sends", "0009_send_attachments"),
    ]

    operations = [
        migrations.AlterField(
            model_name="send",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="sends",
                to="accounts.organization",
            ),
        ),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="idempotency_records",
                to="accounts.organization",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="send",
                    name="public_id",
                    field=models.CharField(editable=False, max_length=40),
                ),
                migrations.AddConstraint(
                    model_name="send",
                    constraint=models.UniqueConstraint(
                        fields=("public_id",), name="send_public_id"
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="public_id",
                    field=models.CharField(editable=False, max_length=40),
                ),
                migrations.AddConstraint(
                    model_name="event",
                    constraint=models.UniqueConstraint(
                        fields=("public_id",), name="event_public_id"
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="dedupe_key",
                    field=models.CharField(blank=True, max_length=64, null=True),
                ),
                migrations.AddConstraint(
                    model_name="event",
                    constraint=models.UniqueConstraint(
                        fields=("dedupe_key",), name="event_dedupe_key"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
