"""`python -m bench.queue_drain`: how fast Celery workers deliver a backlog of queued sends.

Accepts `--sends` queued sends first (the bench organization's `queued` policy, through the
send API in this process, each published to the file broker of this run), then starts one
`celery worker` (`--queue-workers` processes, as `make bench` does) and waits until every one
is delivered to the counting SMTP server. Reports the sends delivered per second from the
first delivery to the last (the worker's start-up left out) and the worker's CPU milliseconds
per send over that span (its main process and pool children, from /proc). The broker's limits
show here without the API's load beside them: before the file broker woke a worker on an
acknowledgement, a worker of 2 processes delivered at most 20 sends a second.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench.profile import in_process_client, post_send
from bench.run import (
    BIN,
    CLOCK_TICKS,
    QUEUED_BODY,
    ROOT,
    SmtpCounter,
    cpu_ticks,
    parse_args,
    stop_group,
)


def worker_ticks(main_pid: int) -> int:
    children = subprocess.run(
        ["pgrep", "-P", str(main_pid)], capture_output=True, text=True
    ).stdout.split()
    return sum(cpu_ticks(pid) for pid in [main_pid, *map(int, children)])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_drain")
    parser.add_argument("--sends", type=int, default=400)
    options, rest = parser.parse_known_args()
    args = parse_args(rest)
    smtp = SmtpCounter()
    worker = None
    try:
        client, token = in_process_client(args, smtp, "queue drain")
        from django.db.models import Max, Min

        from accounts.models import Organization
        from sends.models import Policy, Send

        organization = Organization.objects.get(slug="bench")
        Policy.objects.update_or_create(
            organization=organization, key="queued", defaults={"delivery_mode": "queue"}
        )
        after = Send.objects.aggregate(last=Max("id"))["last"] or 0
        body = json.dumps(QUEUED_BODY)
        for _ in range(options.sends):
            response = post_send(client, token, body)
            assert response.status_code == 200, response.content
        log = open(os.devnull, "wb")
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "fluxomail", "worker", "--loglevel=WARNING",
             f"--concurrency={args.queue_workers}", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        ours = Send.objects.filter(id__gt=after)
        deadline = time.monotonic() + 300
        while not ours.filter(status="sent").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        ticks, first = worker_ticks(worker.pid), ours.filter(status="sent").count()
        while ours.filter(status="queued").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        ticks = worker_ticks(worker.pid) - ticks
        sent = ours.filter(status="sent")
        span = sent.aggregate(first=Min("updated_at"), last=Max("updated_at"))
        seconds = (span["last"] - span["first"]).total_seconds()
        count = sent.count()
        print(
            f"{count} of {options.sends} delivered, {(count - 1) / seconds:.1f} sends/s from the"
            f" first delivery to the last ({args.queue_workers} worker processes); worker CPU"
            f" {ticks * 1000 / CLOCK_TICKS / max(1, count - first):.1f} ms per send"
        )
    finally:
        if worker is not None:
            stop_group(worker, grace=20)
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
