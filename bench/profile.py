"""Profiles the send path in one process: `python -m bench.profile [--requests N] [--html]`
(`--cpu`: CPU milliseconds per request instead, without the profiler).

Same settings as `make bench` (bench.settings, PostgreSQL flx_bench, Redis db 14, the counting
SMTP server), requests through Django's full middleware stack with the test client, sampled
with pyinstrument. Prints the call tree, slowest first.
"""

import argparse
import json
import os
import sys
import time
import uuid

from bench.run import HTML_BODY, SMALL_BODY, SmtpCounter, ensure_database, parse_args, service_env


def in_process_client(args, smtp: SmtpCounter, key_name: str):
    """Django set up on the benchmark's settings and database (migrated), the bench
    organization, a new send key for it, and a test client: (client, the key's token)."""
    ensure_database(args.db, args)
    os.environ.update(service_env(args.db, args, smtp.port))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import ApiKey, Organization, Scope
    from accounts.services import create_organization

    call_command("migrate", verbosity=0)
    organization = Organization.objects.filter(slug="bench").first() or create_organization(
        name="Bench",
        slug="bench",
        owner_username="bench",
        owner_password=None,
        from_name="Bench",
        from_email="bench@example.com",
    )
    _, token = ApiKey.objects.create_key(
        organization=organization,
        name=key_name,
        scopes=[Scope.SEND_EMAIL],
        rate_limit_per_minute=10_000_000,
    )
    return Client(HTTP_HOST="127.0.0.1"), token


def post_send(client, token: str, body: str, key: str | None = None):
    """POST /api/v1/emails/send through the test client with the key's token and an
    Idempotency-Key (a new one unless `key` is given): the response."""
    return client.post(
        "/api/v1/emails/send",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--html", action="store_true", help="the 10 KB HTML body")
    parser.add_argument("--replays", action="store_true", help="replay one completed key")
    parser.add_argument(
        "--cpu", action="store_true", help="CPU ms per request (process time), no profiler"
    )
    options, rest = parser.parse_known_args()
    args = parse_args(rest)
    smtp = SmtpCounter()
    try:
        client, token = in_process_client(args, smtp, "profile")
        from pyinstrument import Profiler

        body = json.dumps(HTML_BODY if options.html else SMALL_BODY)

        def send(key: str) -> int:
            return post_send(client, token, body, key).status_code

        fixed = f"profile-{uuid.uuid4().hex}"
        for _ in range(20):  # warm caches, connections and imports
            assert send(fixed if options.replays else uuid.uuid4().hex) == 200
        if options.cpu:
            started = time.process_time()
            for _ in range(options.requests):
                send(fixed if options.replays else uuid.uuid4().hex)
            spent = (time.process_time() - started) * 1000 / options.requests
            print(f"{spent:.2f} CPU ms per request (this process: client, app, drivers)")
            return 0
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(options.requests):
            send(fixed if options.replays else uuid.uuid4().hex)
        profiler.stop()
        print(
            profiler.output_text(
                unicode=False, color=False, show_all=os.environ.get("PROFILE_ALL") == "1"
            )
        )
    finally:
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
