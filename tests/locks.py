"""PostgreSQL concurrency tests: knowing when one session waits on another's lock."""

import time

from django.db import connection


def a_session_waits_on_a_lock() -> bool:
    """Whether any session of this test database waits on a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def wait_for_a_lock_wait(seconds: float = 30) -> bool:
    """Polls until some session waits on a lock (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if a_session_waits_on_a_lock():
            return True
        time.sleep(0.01)
    return False
