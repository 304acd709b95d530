"""Server-side prepared statements for the raw SQL of the hot paths (PostgreSQL, psycopg2).

psycopg2 sends each statement as text, and PostgreSQL parses, analyses and plans it on every
execution: for the send path's statements (sends/sql.py) that was about half of PostgreSQL's
work per statement (planning 0.12 to 0.2 ms each against 0.07 to 0.25 ms of execution,
`EXPLAIN (ANALYZE, SUMMARY)` on this machine). `execute()` prepares a statement once per
database connection (`PREPARE name (types) AS ...`) and runs it with `EXECUTE name (...)`;
after five executions PostgreSQL keeps a generic plan when it costs no more than the custom
ones, and plans nothing at all.

A prepared statement lives as long as its connection: the names prepared are remembered per
psycopg2 connection (a new connection prepares again), and PREPARE is not undone by a rollback.
Turn it off with `DATABASE_PREPARED_STATEMENTS=false` behind a pooler that shares a server
connection between clients (PgBouncer in transaction mode): the statements are then sent as text.
"""

import functools
import hashlib
import re
import weakref

from django.conf import settings
from django.db.models import Field

# psycopg2 connection → the names prepared on it.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_TYPE_MODIFIER = re.compile(r"\(\s*\d+\s*(?:,\s*\d+\s*)?\)")


def type_of(field: Field, connection) -> str:
    """The parameter type for a value of `field`: its column type without a length or
    precision (the column applies its own on write, and raises as it would for a text
    statement: a varchar(64) parameter would cut a longer value short instead)."""
    return _TYPE_MODIFIER.sub("", field.db_type(connection))


class Params:
    """Collects a statement's placeholders with their types while its text is built:
    `p(type)` (or `p.field(field)`) is written where a parameter goes, and `p.types` then
    holds one type per placeholder, in order ("unknown" lets PostgreSQL infer it)."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.types: list[str] = []

    def __call__(self, type_: str = "unknown") -> str:
        self.types.append(type_)
        return "%s"

    def field(self, field: Field) -> str:
        return self(type_of(field, self.connection))

    def fields(self, fields) -> str:
        return ", ".join(self.field(f) for f in fields)


@functools.lru_cache(maxsize=256)
def _statement(sql: str, types: tuple[str, ...]) -> tuple[str, str, str]:
    """(name, PREPARE text, EXECUTE text with a %s per parameter) of `sql` with `types`."""
    pieces = sql.split("%s")
    if len(pieces) != len(types) + 1 or any("%" in piece for piece in pieces):
        raise ValueError("each parameter is one %s, and no other % is in the text")
    numbered = pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], 1))
    name = "flx_" + hashlib.blake2s(f"{types!r}{sql}".encode(), digest_size=10).hexdigest()
    declared = f" ({', '.join(types)})" if types else ""
    arguments = f" ({', '.join(['%s'] * len(types))})" if types else ""
    return name, f"PREPARE {name}{declared} AS {numbered}", f"EXECUTE {name}{arguments}"


def execute(cursor, sql: str, params, types) -> None:
    """cursor.execute(sql, params), with `sql` prepared on the cursor's connection the first
    time; `types` has one PostgreSQL type per %s (Params.types)."""
    if not settings.DATABASE_PREPARED_STATEMENTS:
        cursor.execute(sql, params)
        return
    name, prepare, run = _statement(sql, tuple(types))
    raw = cursor.cursor.connection  # Django's CursorWrapper → psycopg2's cursor → connection
    names = _prepared.get(raw)
    if names is None:
        names = _prepared[raw] = set()
    if name not in names:
        cursor.execute(prepare)
        names.add(name)
    cursor.execute(run, params)
