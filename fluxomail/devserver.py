"""`make run`: the demo's data, a local webhook receiver, and the development web server, a
Celery worker and beat, started and stopped together.

    python -m fluxomail.devserver [HOST:PORT] [--webhook-port N]

1. The webhook receiver (fluxomail/webhook_receiver.py) listens on 127.0.0.1:N (a free port
   by default), in a thread of this launcher.
2. `manage.py bootstrap_demo --webhook-url <the receiver>` creates (once) the demo organization,
   login, key and sample sends (one of them queued), points the demo's webhook endpoint at the
   receiver, and leaves the endpoint's secret and the sample sends in var/demo-webhook.json.
3. runserver, `celery worker` and `celery beat` start as children. The terminal shows the
   server's lines and one line per webhook the receiver gets (also in var/log/webhooks.log;
   the worker and beat log to var/log/), then the credentials block once the server answers
   and the outcome of every sample send has arrived (or WAIT_SECONDS have passed).

Each child runs in a process group of its own, so Ctrl-C reaches this launcher only: it then
sends SIGTERM to each child (the worker finishes its tasks and stops its pool), waits up to
10 s, kills whatever is left of each group (runserver's reloaded child among them), and stops
the receiver. When one child exits, the others are stopped too, so no worker is left running
without its web server or the other way round.

FLUXOMAIL_DEMO_DIR (default: the checkout) holds .demo-credentials.json and var/ for the demo
files; FLUXOMAIL_LOG_DIR (default: var/log there) the logs. The tests set both.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from fluxomail.webhook_receiver import Receiver

GRACE_SECONDS = 10
# How long the credentials block waits for the sample sends' webhooks once the server answers.
WAIT_SECONDS = 60
BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("FLUXOMAIL_DEMO_DIR") or BASE_DIR)
CREDENTIALS = DEMO_DIR / ".demo-credentials.json"
BANNER = DEMO_DIR / "var" / "demo-banner.txt"
WEBHOOK_STATE = DEMO_DIR / "var" / "demo-webhook.json"
LOG_DIR = Path(os.environ.get("FLUXOMAIL_LOG_DIR") or DEMO_DIR / "var" / "log")


def commands(address: str) -> dict[str, list[str]]:
    python, manage = sys.executable, str(BASE_DIR / "manage.py")
    return {
        "web": [python, manage, "runserver", address],
        "worker": [python, "-m", "celery", "-A", "fluxomail", "worker", "--loglevel=INFO",
                   "--concurrency=2", "--without-mingle", "--without-gossip"],
        "beat": [python, "-m", "celery", "-A", "fluxomail", "beat", "--loglevel=INFO"],
    }  # fmt: skip


def stop(children: dict[str, subprocess.Popen]) -> None:
    for process in children.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in children.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group is gone already
        process.wait()


def serving(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def bootstrap(receiver: Receiver) -> set[str]:
    """Runs bootstrap_demo; on success the receiver knows the endpoint's secret. Returns the
    sample sends whose webhooks the credentials block waits for, or raises SystemExit."""
    command = [sys.executable, str(BASE_DIR / "manage.py"), "bootstrap_demo"]
    code = subprocess.call([*command, "--webhook-url", receiver.url, "--no-banner"])
    if code:
        raise SystemExit(code)
    state = json.loads(WEBHOOK_STATE.read_text())
    receiver.secret = state["secret"]
    return set(state["samples"])


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fluxomail.devserver")
    parser.add_argument("address", nargs="?", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument(
        "--webhook-port", type=int, default=0, help="the local webhook receiver's port (0: free)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    webhook_log = open(LOG_DIR / "webhooks.log", "a")  # noqa: SIM115 (closed in finally)

    lock = threading.Lock()

    def report(line: str) -> None:  # from the receiver's request threads
        with lock:
            print(line, flush=True)
            if not webhook_log.closed:
                webhook_log.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}\n")
                webhook_log.flush()

    try:
        receiver = Receiver(args.webhook_port, report)
    except OSError as exc:
        print(f"devserver: the webhook receiver cannot listen on 127.0.0.1:{args.webhook_port}: "
              f"{exc.strerror}", flush=True)  # fmt: skip
        webhook_log.close()
        return 1
    children = {}
    try:
        awaiting = bootstrap(receiver)
        receiver.start()
        return run(args.address, receiver, awaiting, children)
    except KeyboardInterrupt:  # Ctrl-C while bootstrap_demo ran
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        stop(children)
        receiver.stop()
        with lock:
            webhook_log.close()


def run(address: str, receiver: Receiver, awaiting: set[str], children: dict) -> int:
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for name, command in commands(address).items():
        # The web server keeps the terminal; the worker's and beat's lines go to var/log.
        output = None if name == "web" else open(LOG_DIR / f"{name}.log", "ab")  # noqa: SIM115
        children[name] = subprocess.Popen(
            command, start_new_session=True, stdout=output, stderr=output
        )
    print(
        f"devserver: worker and beat log to {LOG_DIR}/; webhooks go to {receiver.url}",
        flush=True,
    )
    announced = False
    answered_at = None
    while not stopping:
        if not announced:
            if answered_at is None and serving(address):
                answered_at = time.monotonic()
            waited = time.monotonic() - answered_at if answered_at is not None else 0.0
            # A second after the answer: runserver logs the /healthz request after answering.
            if waited > 1 and (awaiting <= receiver.settled or waited > WAIT_SECONDS):
                # The terminal ends with the credentials and the first commands to run.
                announced = True
                if BANNER.exists():
                    print(BANNER.read_text(), flush=True)
        exited = [(name, p.returncode) for name, p in children.items() if p.poll() is not None]
        if exited:
            name, code = exited[0]
            print(f"devserver: {name} exited with {code}; stopping the others", flush=True)
            return code
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
