"""Live gunicorn servers and a controllable SMTP server for the reliability and security suites.

`LiveServers` starts N gunicorn instances of the real WSGI application, each in its own process
group on a free 127.0.0.1 port, against the database of the running test (pytest-django has
switched settings to the test database; tests that use it need `transaction=True` so that their
rows are committed and visible to the servers), the same Redis and an SMTP server given by the
test. Every server's stdout and stderr (gunicorn's access log included) go to a file kept for
the whole session, so that the security suite can search every log line for API keys.

`FaultySmtp` is aiosmtpd on 127.0.0.1 whose answer the test chooses: accept, a fixed reply
(550, 451), a delay longer than the client's timeout, or holding the DATA command until released.
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from tests.conftest import JOBS_DIR, free_port

# Every log file written by a live server during this pytest session.
LOG_DIR = Path(tempfile.mkdtemp(prefix="fluxomail-live-logs-"))
LOG_FILES: list[Path] = []
atexit.register(shutil.rmtree, LOG_DIR, True)


def gunicorn_path() -> str:
    """gunicorn from the running interpreter's environment (the project's virtualenv)."""
    candidate = Path(sys.executable).parent / "gunicorn"
    if candidate.exists():
        return str(candidate)
    return "gunicorn"


def database_url() -> str:
    """The URL of the database the running test uses (the test database under pytest-django)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("live servers need PostgreSQL: an in-memory SQLite is not shared")
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{db['NAME']}"


def live_env(*, smtp_port: int | None = None, extra: dict[str, str] | None = None) -> dict:
    """The environment of a live process (server or worker) on the running test's database,
    Redis, job broker and, when given, SMTP server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "EMAIL_", "PYTEST", "DJANGO_SETTINGS"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="fluxomail.settings",
        DATABASE_URL=database_url(),
        DEBUG="false",
        LOG_LEVEL="DEBUG",
        PYTHONUNBUFFERED="1",
        # The filesystem broker of this test session (a RabbitMQ URL in the environment wins).
        JOBS_DIR=str(JOBS_DIR),
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    if smtp_port is not None:
        env.update(
            EMAIL_BACKEND="sends.delivery.PooledSMTPBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp_port),
            EMAIL_TIMEOUT="2",
        )
    env.update(extra or {})
    return env


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class LiveServer:
    port: int
    log: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        """One HTTP request on a fresh connection (no client-side pooling between requests)."""
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        all_headers = {"Content-Type": "application/json"} if payload is not None else {}
        all_headers.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()


@dataclass
class LiveServers:
    """N gunicorn instances sharing the test's PostgreSQL database and Redis."""

    count: int = 2
    workers: int = 2
    threads: int = 4
    env: dict[str, str] = field(default_factory=dict)
    smtp_port: int | None = None
    servers: list[LiveServer] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        return live_env(smtp_port=self.smtp_port, extra=self.env)

    def start(self) -> LiveServers:
        for _ in range(self.count):
            port = free_port()
            log = LOG_DIR / f"gunicorn-{port}-{len(LOG_FILES)}.log"
            LOG_FILES.append(log)
            server = LiveServer(port=port, log=log, env=self.base_env())
            self.servers.append(server)
            self._spawn(server)
        for server in self.servers:
            self._wait_ready(server)
        return self

    def _spawn(self, server: LiveServer) -> None:
        command = [
            gunicorn_path(),
            "fluxomail.wsgi",
            "--bind",
            f"127.0.0.1:{server.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--timeout",
            "30",
            "--graceful-timeout",
            "2",
            "--access-logfile",
            "-",
            "--error-logfile",
            "-",
        ]
        with server.log.open("ab") as log:
            # A process group of its own: SIGKILL reaches the master and all its workers.
            server.process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=server.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self, server: LiveServer, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {server.log.read_text()[-2000:]}")
            try:
                if server.request("GET", "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn on {server.port} not ready: {server.log.read_text()[-2000:]}")

    def __getitem__(self, index: int) -> LiveServer:
        return self.servers[index]

    def __iter__(self):
        return iter(self.servers)

    def kill(self, index: int) -> None:
        """SIGKILL the master and every worker of one instance, as a crash or the OOM killer."""
        server = self.servers[index]
        if server.process and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)

    def restart(self, index: int, env: dict[str, str] | None = None) -> LiveServer:
        """Starts instance `index` again on its port (after kill), optionally with new settings."""
        server = self.servers[index]
        self.kill(index)
        server.env.update(env or {})
        self._spawn(server)
        self._wait_ready(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            process = server.process
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def logs(self) -> str:
        return "".join(s.log.read_text(errors="replace") for s in self.servers)

    def __enter__(self) -> LiveServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def all_logs() -> str:
    """Every live server's output in this session."""
    return "".join(p.read_text(errors="replace") for p in LOG_FILES if p.exists())


class FaultySmtp:
    """aiosmtpd on 127.0.0.1 whose behaviour the test sets between requests.

    mode: "accept" keeps the message; "reply" answers RCPT TO with `reply` (e.g. "550 5.1.1 ...");
    "slow" waits `delay` seconds before answering RCPT TO (longer than the client's timeout);
    "hold" keeps DATA waiting until `release()` (a claim held while delivery hangs).
    """

    def __init__(self, port: int | None = None):
        from aiosmtpd.controller import Controller

        self.port = port or free_port()
        self.messages: list = []
        self.mode = "accept"
        self.reply = "250 OK"
        self.delay = 0.0
        self.arrived = threading.Event()  # set when a DATA command reaches the handler
        self._released = threading.Event()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
                if sink.mode == "slow":
                    # Slow before the message is transmitted: a client that gives up has sent
                    # nothing, so "not delivered" is certain.
                    await asyncio.sleep(sink.delay)
                if sink.mode == "reply":
                    return sink.reply
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                sink.arrived.set()
                if sink.mode == "hold":
                    while not sink._released.is_set():
                        await asyncio.sleep(0.05)
                    return "451 4.3.0 Released without delivery"
                sink.messages.append(envelope)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> FaultySmtp:
        self._controller.start()
        return self

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._controller.stop()

    def __enter__(self) -> FaultySmtp:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def concurrently(calls: Iterable, max_workers: int = 50) -> list:
    """Runs the callables at once (threads) and returns their results in order."""
    from concurrent.futures import ThreadPoolExecutor

    calls = list(calls)
    barrier = threading.Barrier(min(len(calls), max_workers))

    def run(call):
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        return call()

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(run, calls))
