"""`python -m bench.explain`: the plans of every events query shape on the million-event database.

Runs GET /api/v1/events once per query shape through the real view (Django's test client), the
stream's catch-up and the stream poller, captures the SQL each one sends to PostgreSQL, and runs
`EXPLAIN (ANALYZE, BUFFERS)` on the statement that reads sends_event. Prints, per shape, the
plan's nodes, the rows the scan read and the buffers it touched: an index range scan reads about
as many rows as the page holds, whatever the size of the table. Needs the database that
`make bench` seeds (`flx_bench_1m`; `--db` names another) and writes bench/results/explain.json.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
QUERIES = {
    "newest page": {},
    "one type": {"types": "email.bounced"},
    "two types": {"types": ["email.bounced", "email.delayed"]},
    "two rare types": {"types": ["email.complained", "email.dropped"]},
    "wildcard": {"types": "email.*"},
    "domain": {"domain": "example3.com"},
    "smtpCode": {"smtpCode": "550"},
    "mtaHost": {"mtaHost": "mx3.example.net"},
    "type and domain": {"types": "email.opened", "domain": "example2.com"},
}


def plan_summary(plan: dict) -> dict:
    """The nodes of a plan (outermost first), and what its scans read."""
    nodes, rows, scans = [], 0, []

    def walk(node: dict) -> None:
        nonlocal rows
        name = node["Node Type"]
        if "Index Name" in node:
            name += f" using {node['Index Name']}"
            scans.append(node.get("Scan Direction", ""))
        nodes.append(name)
        if "Scan" in node["Node Type"] and node.get("Relation Name") == "sends_event":
            rows += node["Actual Rows"] * node.get("Actual Loops", 1)
            rows += node.get("Rows Removed by Filter", 0)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return {
        "nodes": nodes,
        "rows_read": rows,
        "shared_buffers": plan["Plan"].get("Shared Hit Blocks", 0)
        + plan["Plan"].get("Shared Read Blocks", 0),
        "ms": round(plan["Execution Time"], 2),
    }


def explain(sql: str) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        return plan_summary(cursor.fetchone()[0][0])


def explain_run(run) -> dict:
    """The plans of every statement on sends_event that `run` sends (several types: one per
    type), with their rows and buffers added up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        run()
    plans = [explain(q["sql"]) for q in captured if 'FROM "sends_event"' in q["sql"]]
    return {
        "statements": len(plans),
        "nodes": plans[0]["nodes"],
        "rows_read": sum(p["rows_read"] for p in plans),
        "shared_buffers": sum(p["shared_buffers"] for p in plans),
        "ms": round(sum(p["ms"] for p in plans), 2),
        "plans": plans,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__)
    parser.add_argument("--db", default="flx_bench_1m")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres@127.0.0.1:5432"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "explain.json")
    args = parser.parse_args(argv)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="fluxomail.settings",
        DATABASE_URL=f"postgres://{args.pg}/{args.db}",
        FLUXOMAIL_ENV="development",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test import Client

    from accounts.models import ApiKey, Organization, Scope
    from sends.models import Event
    from sends.stream import Poller, Stream

    organization = Organization.objects.get(slug="bench")
    key, token = ApiKey.objects.create_key(
        organization=organization, name="explain", scopes=[Scope.READ_SENDS]
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    total = Event.objects.count()
    results = {}
    try:
        for name, query in QUERIES.items():
            path = "/api/v1/events?" + urlencode(query, doseq=True)
            results[name] = explain_run(lambda path=path: client.get(path))
        # Paging: the second page of the newest events, and "newer than" an id mid-table.
        first = client.get("/api/v1/events").json()
        cursor_path = "/api/v1/events?" + urlencode({"cursor": first["nextCursor"]})
        results["cursor (page 2)"] = explain_run(lambda: client.get(cursor_path))
        middle = Event.objects.order_by("public_id").values_list("public_id", flat=True)[total // 2]
        since_path = "/api/v1/events?" + urlencode({"since": middle})
        results["since an id"] = explain_run(lambda: client.get(since_path))
        # The stream: a catch-up page after an old id, and the poller's read of new ids.
        stream = Stream(organization=organization, key_id=key.pk, params={"since": (middle, True)})
        results["stream catch-up"] = explain_run(stream.catch_up)
        results["stream poller"] = explain_run(lambda: Poller().poll({organization.pk}))
    finally:
        key.revoke()
    report = {"database": args.db, "events": total, "shapes": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{total} events in {args.db}")
    print(
        f"{'shape':<18}{'SQL':>4}{'rows read':>10}{'buffers':>9}{'ms':>8}  plan (first statement)"
    )
    for name, row in results.items():
        plan = " > ".join(row["nodes"])
        print(
            f"{name:<18}{row['statements']:>4}{row['rows_read']:>10}{row['shared_buffers']:>9}"
            f"{row['ms']:>8}  {plan}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
