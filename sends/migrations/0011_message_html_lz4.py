"""Stores new messages' HTML compressed with lz4 instead of PostgreSQL's default pglz (issue
15): a 20 KB rendered HTML is TOASTed on every HTML send, and lz4 compresses it for less of the
backend's CPU (an INSERT of the bench's rendered HTML: 0.46 -> 0.30 CPU ms, README, "Query
budget") and a little smaller (1,782 -> 1,616 bytes stored).

SET COMPRESSION changes how new values are written; rows already stored stay as they are (both
read back the same), so nothing is rewritten. PostgreSQL only, and only when the server was
built with lz4 (PostgreSQL 14 and later, optional); elsewhere nothing changes.
"""

from django.db import migrations


def _lz4(connection) -> bool:
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _set_compression(schema_editor, method: str) -> None:
    if _lz4(schema_editor.connection):
        schema_editor.execute(
            f"ALTER TABLE {schema_editor.quote_name('sends_message')}"
            f" ALTER COLUMN {schema_editor.quote_name('html')} SET COMPRESSION {method}"
        )


def forwards(apps, schema_editor):
    _set_compression(schema_editor, "lz4")


def backwards(apps, schema_editor):
    _set_compression(schema_editor, "pglz")


class Migration(migrations.Migration):
    dependencies = [("sends", "0010_drop_unused_indexes")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
