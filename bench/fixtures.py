"""Benchmark data, run in a subprocess with the benchmark's DATABASE_URL:
`python -m bench.fixtures KEYS [SEED_ROWS]`.

Creates (once) the `bench` organization, revokes the keys of earlier runs and issues KEYS fresh
ones (their secrets exist only in this process's output), and tops the sends and events tables
up to SEED_ROWS rows each with one INSERT ... SELECT, which takes seconds where the ORM would
take minutes. Prints one JSON line.
"""

import json
import os
import sys
import time

import django


def seed_sends(organization, target: int) -> int:
    from django.db import connection

    from fluxomail.ids import _base32
    from sends.models import Send

    existing = Send.objects.count()
    missing = target - existing
    if missing <= 0:
        return existing
    # Every column from the model's own defaults (so new fields need no change here), except
    # the ones that must vary per row. Ids carry a time a year back so that they sort before
    # the benchmark's new sends, as an organization's history would.
    template = Send(organization=organization, endpoint="send", to="old@example.com")
    template.subject = "Archived message"
    template.status = Send.Status.SENT
    year_ago_ms = int((time.time() - 365 * 86400) * 1000)
    columns, expressions, params = [], [], []
    for field in Send._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.name == "public_id":
            expressions.append("%s || lpad(to_hex(g + %s), 16, '0')")
            params += [f"sends_{_base32(year_ago_ms, 10)}", existing]
        elif field.name == "to":
            expressions.append("'user' || (g %% 5000) || '@example.com'")
        elif field.name in ("created_at", "updated_at"):
            expressions.append("now() - interval '365 days' + g * interval '10 ms'")
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(getattr(template, field.attname), connection))
    sql = (
        f"INSERT INTO {Send._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS g"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, missing])
        cursor.execute(f"ANALYZE {Send._meta.db_table}")
    return Send.objects.count()


EVENT_TYPES = ["email.sent", "email.delivered", "email.opened", "email.clicked"]
EVENT_TYPES += ["email.bounced", "email.delayed"]


def seed_events(target: int) -> int:
    """One event per seeded send (oldest sends first), as the event log of a busy organization:
    six types in turn, recipients on 20 domains, and on bounces and delays an SMTP code (550 or
    451) and one of 10 MTA hosts. Ids carry the send's time, a year back."""
    from django.db import connection

    from fluxomail.ids import _base32
    from sends.models import Event

    existing = Event.objects.count()
    missing = target - existing
    if missing <= 0:
        return existing
    year_ago_ms = int((time.time() - 365 * 86400) * 1000)
    types = "ARRAY[" + ", ".join(f"'{kind}'" for kind in EVENT_TYPES) + "]"
    sql = (
        f"INSERT INTO {Event._meta.db_table} (public_id, organization_id, send_id, type, "
        "occurred_at, recipient_domain, smtp_code, mta_host, data) "
        "SELECT %s || lpad(to_hex(n), 16, '0'), organization_id, id, "
        f"({types})[1 + n %% 6], created_at, 'example' || (n %% 20) || '.com', "
        "CASE WHEN n %% 6 = 4 THEN 550 WHEN n %% 6 = 5 THEN 451 END, "
        "CASE WHEN n %% 6 >= 4 THEN 'mx' || (n %% 10) || '.example.net' ELSE '' END, '{}' "
        "FROM (SELECT id, organization_id, created_at, row_number() OVER (ORDER BY id) AS n "
        "FROM sends_send ORDER BY id OFFSET %s LIMIT %s) AS s"
    )
    with connection.cursor() as cursor:
        # row_number() counts before OFFSET: n goes on from the rows already there.
        cursor.execute(sql, [f"evt_{_base32(year_ago_ms, 10)}", existing, missing])
        cursor.execute(f"ANALYZE {Event._meta.db_table}")
    return Event.objects.count()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    from accounts.models import ApiKey, Organization, Scope
    from accounts.services import create_organization
    from sends.models import Policy

    keys, seed_rows = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0
    organization = Organization.objects.filter(slug="bench").first()
    if organization is None:
        organization = create_organization(
            name="Bench",
            slug="bench",
            owner_username="bench",
            owner_email="bench@example.com",
            owner_password=None,
            from_name="Bench",
            from_email="bench@example.com",
        )
    # The queue-mode scenario sends under this policy (bench/run.py, queued_small).
    Policy.objects.update_or_create(
        organization=organization, key="queued", defaults={"delivery_mode": "queue"}
    )
    for old in ApiKey.objects.for_org(organization).filter(revoked_at__isnull=True):
        old.revoke()
    tokens = []
    for index in range(keys):
        # A cap far above what the machine can do: the shared counter runs on every request,
        # as it does for a capped production key, but never refuses.
        _, token = ApiKey.objects.create_key(
            organization=organization,
            name=f"bench {index}",
            scopes=[Scope.SEND_EMAIL, Scope.READ_SENDS],
            rate_limit_per_minute=10_000_000,
        )
        tokens.append(token)
    rows = seed_sends(organization, seed_rows) if seed_rows else None
    event_rows = seed_events(seed_rows) if seed_rows else None
    print(json.dumps({"tokens": tokens, "sends": rows, "events": event_rows}))


if __name__ == "__main__":
    main()
