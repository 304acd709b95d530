"""`make run`: the development web server, a Celery worker and beat, started and stopped together.

    python -m fluxomail.devserver [HOST:PORT]

Each child runs in a process group of its own, so Ctrl-C reaches this launcher only: it then
sends SIGTERM to each child (the worker finishes its tasks and stops its pool), waits up to
10 s, and kills whatever is left of each group (runserver's reloaded child among them). When
one child exits, the others are stopped too, so no worker is left running without its web
server or the other way round.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

GRACE_SECONDS = 10
BASE_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = Path(os.environ.get("FLUXOMAIL_LOG_DIR") or BASE_DIR / "var" / "log")
BANNER = BASE_DIR / "var" / "demo-banner.txt"


def commands(address: str) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "manage.py", "runserver", address],
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


def main(argv: list[str]) -> int:
    address = argv[0] if argv else "127.0.0.1:8000"
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    children = {}
    for name, command in commands(address).items():
        # The web server keeps the terminal; the worker's and beat's lines go to var/log.
        output = None if name == "web" else open(LOG_DIR / f"{name}.log", "ab")  # noqa: SIM115
        children[name] = subprocess.Popen(
            command, start_new_session=True, stdout=output, stderr=output
        )
    print(f"devserver: worker and beat log to {LOG_DIR}/", flush=True)
    announced = False
    started = time.monotonic()
    code = 0
    try:
        while not stopping:
            if not announced and time.monotonic() - started < 60 and serving(address):
                # The terminal ends with the credentials and the first commands to run.
                announced = True
                if BANNER.exists():
                    print(BANNER.read_text(), flush=True)
            exited = [(name, p.returncode) for name, p in children.items() if p.poll() is not None]
            if exited:
                name, code = exited[0]
                print(f"devserver: {name} exited with {code}; stopping the others", flush=True)
                break
            time.sleep(0.2)
    finally:
        stop(children)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
