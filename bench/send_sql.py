"""`python -m bench.send_sql`: the send path's database work on PostgreSQL in one process, the
ORM's statements (what SQLite runs) against sends/sql.py's.

Per fresh send: idempotency.claim(), the send INSERT (services._create_send) and
services._settle() of a delivered attempt (message, event, counter, status, the key's answer);
per replay: idempotency.claim() of a completed key. Both paths are the project's own code:
`sends.sql.enabled` is switched off for the ORM's. No mail, no HTTP, and the webhooks' listener
is disconnected (it publishes a job either way): what differs is the database work. Reports
the CPU of this process and of its PostgreSQL backend (from /proc) and the wall time per
operation, the median of interleaved rounds. Writes to the organization `bench-sql` of the
database `--db` (default flx_bench), migrated first.
"""

import argparse
import os
import statistics
import sys
import time
import uuid

from bench.run import ensure_database, parse_args, service_env

TICKS = os.sysconf("SC_CLK_TCK")


def backend_ms(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.send_sql")
    parser.add_argument("--sends", type=int, default=300, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    options, rest = parser.parse_known_args()
    args = parse_args(rest)
    ensure_database(args.db, args)
    os.environ.update(service_env(args.db, args, smtp_port=1))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import Organization
    from sends import idempotency, services, sql
    from sends.models import Event, Message, Send
    from sends.signals import event_recorded

    call_command("migrate", verbosity=0)
    event_recorded.disconnect(dispatch_uid="webhooks.fan_out")
    organization, _ = Organization.objects.get_or_create(slug="bench-sql", name="Bench SQL")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    data = {"to": "user@example.com", "subject": "Hello", "policyKey": "transactional"}
    on_postgres = sql.enabled

    def fresh(key: str) -> None:
        request = idempotency.IdempotencyRequest(key=key, fingerprint="f" * 64, endpoint="send")
        claim = idempotency.claim(organization, request)
        send = services._create_send(
            organization=organization,
            key=None,
            endpoint="send",
            data=data,
            request_id="req_bench",
            idempotency_key=key,
        )
        attempt = Message(
            send=send,
            from_email="hello@bench.test",
            to=[data["to"]],
            provider="smtp",
            provider_message_id=f"<{key}@bench.test>",
            feedback_id=f"{send.public_id}:bench-sql:transactional:fluxomail",
            text="Hello",
            html="<p>Hello</p>",
            headers={"Message-ID": f"<{key}@bench.test>"},
        )
        body = {"sendId": send.public_id, "status": "sent", "messageId": "<m>", "reused": False}
        services._settle(
            send, Send.Status.SENT, Event.Type.SENT, claim.record, body, attempt=attempt
        )

    def replay(key: str) -> None:
        request = idempotency.IdempotencyRequest(key=key, fingerprint="f" * 64, endpoint="send")
        assert isinstance(idempotency.claim(organization, request), idempotency.Replay)

    def measure(operation, keys: list[str]) -> tuple[float, float, float]:
        cpu, backend, wall = time.process_time(), backend_ms(pid), time.perf_counter()
        for key in keys:
            operation(key)
        count = len(keys)
        return (
            (time.process_time() - cpu) * 1000 / count,
            (backend_ms(pid) - backend) / count,
            (time.perf_counter() - wall) * 1000 / count,
        )

    paths = {"orm": lambda: False, "sql": on_postgres}
    figures: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(options.rounds):
        for name, enabled in paths.items():
            sql.enabled = enabled
            keys = [f"bench-{uuid.uuid4()}" for _ in range(options.sends)]
            fresh(f"warm-{uuid.uuid4()}")
            figures.setdefault(f"fresh, {name}", []).append(measure(fresh, keys))
            figures.setdefault(f"replay, {name}", []).append(measure(replay, keys))
    sql.enabled = on_postgres

    print(f"{options.sends} operations per path and round, {options.rounds} rounds (medians)")
    print(f"{'operation':14} {'python CPU ms':>14} {'postgres CPU ms':>16} {'wall ms':>8}")
    for name in sorted(figures):
        rows = figures[name]
        medians = [statistics.median(row[i] for row in rows) for i in range(3)]
        print(f"{name:14} {medians[0]:14.2f} {medians[1]:16.2f} {medians[2]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
