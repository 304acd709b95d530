"""A real Celery worker process (and, on request, beat inside it) for the job tests.

`Worker` runs `celery -A fluxomail worker` in a process group of its own, on the running test's
PostgreSQL database (tests that use it need `transaction=True`), Redis and job broker: RabbitMQ
when CELERY_BROKER_URL names it, else this session's filesystem broker (tests/conftest.py).
Its output goes to a file kept for the session (the security suite searches every log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings

from fluxomail.celery import app as celery_app
from tests.servers import LOG_DIR, LOG_FILES, live_env


def wait_for(condition, limit: float = 90.0, step: float = 0.1, what: str = "condition"):
    """Polls `condition` until it returns something truthy (a wait, never a timing assertion;
    the bound is generous: a shared CI machine may be slow)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what} not reached within {limit} s")


class Worker:
    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        beat: bool = False,
        concurrency: int = 2,
        smtp_port: int | None = None,
        purge: bool = True,
    ):
        self.env = live_env(smtp_port=smtp_port, extra=env)
        self.beat = beat
        self.concurrency = concurrency
        self.purge = purge
        self.log = LOG_DIR / f"worker-{len(LOG_FILES)}.log"
        LOG_FILES.append(self.log)
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        if self.purge:
            # Messages left by earlier tests name rows that are gone; drop them.
            celery_app.control.purge()
        command = [
            sys.executable, "-m", "celery", "-A", "fluxomail", "worker", "--loglevel=INFO",
            f"--concurrency={self.concurrency}", "-n", f"test-{len(LOG_FILES)}@%h",
            # No waiting for other workers' hellos at start: a test runs its workers alone.
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        if self.beat:
            command += ["--beat", "--schedule", str(self.log.with_suffix(".schedule"))]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, limit=60, what="worker ready")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited: {self.output()[-3000:]}")
        return " ready." in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker and its pool, as a crash or the OOM killer would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # A cold shutdown: the test has its answer, nothing is left to finish.
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.stop()
        if exc_type is not None:
            print(f"-- worker output (last 4000 characters):\n{self.output()[-4000:]}")
