"""Live servers, a controllable SMTP server and an SSE client for the reliability, security and
event stream suites.

`LiveServers` starts N instances of the real application, each in its own process group on a
free 127.0.0.1 port: gunicorn with the WSGI application (the default), uvicorn with the ASGI
application (`kind="uvicorn"`, as the event stream is served in production) or Django's
runserver (`kind="runserver"`, what `make run` starts), against the database of the running
test (pytest-django has switched settings to the test database; tests that use it need
`transaction=True` so that their rows are committed and visible to the servers), the same Redis
and an SMTP server given by the test. Every server's stdout and stderr (access logs included) go
to a file kept for the whole session, so that the security suite can search every log line for
API keys.

`FaultySmtp` is aiosmtpd on 127.0.0.1 whose answer the test chooses: accept, a fixed reply
(550, 451), a delay longer than the client's timeout, or holding the DATA command until released.

`SseClient` reads a Server-Sent Events response over http.client, block by block, as sent.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from tests.conftest import JOBS_DIR, free_port

# Every log file written by a live server during this pytest session.
LOG_DIR = Path(tempfile.mkdtemp(prefix="fluxomail-live-logs-"))
LOG_FILES: list[Path] = []
atexit.register(shutil.rmtree, LOG_DIR, True)


def venv_command(name: str) -> str:
    """A command of the running interpreter's environment (the project's virtualenv)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return name


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


LIVE_SECRET_KEY = "live-server-" + os.urandom(16).hex()


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
        # One key for every live process of the session: what one signs, another reads.
        SECRET_KEY=LIVE_SECRET_KEY,
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
    """N server instances sharing the test's PostgreSQL database and Redis."""

    count: int = 2
    kind: str = "gunicorn"  # gunicorn | uvicorn | runserver
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
            log = LOG_DIR / f"{self.kind}-{port}-{len(LOG_FILES)}.log"
            LOG_FILES.append(log)
            server = LiveServer(port=port, log=log, env=self.base_env())
            self.servers.append(server)
            self._spawn(server)
        for server in self.servers:
            self._wait_ready(server)
        return self

    def _command(self, server: LiveServer) -> list[str]:
        address = ["--host", "127.0.0.1", "--port", str(server.port)]
        if self.kind == "uvicorn":
            return [
                venv_command("uvicorn"),
                "fluxomail.asgi:application",
                *address,
                "--workers",
                str(self.workers),
                "--timeout-graceful-shutdown",
                "2",
            ]
        if self.kind == "runserver":
            return [
                sys.executable,
                "manage.py",
                "runserver",
                f"127.0.0.1:{server.port}",
                "--noreload",
            ]
        return [
            venv_command("gunicorn"),
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

    def _spawn(self, server: LiveServer) -> None:
        command = self._command(server)
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
                raise RuntimeError(f"{self.kind} exited: {server.log.read_text()[-2000:]}")
            try:
                if server.request("GET", "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.kind} on {server.port} not ready: {server.log.read_text()[-2000:]}"
        )

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
    "hold" keeps DATA waiting until `release()` (a claim held while delivery hangs);
    "late" keeps the next message but holds its 250 until `release()` (the reply to the end of
    DATA lost to the client's timeout), once: the mode then goes back to "accept".
    `on_message`, when set, is called (in the server's thread) for every message kept, before
    the 250: the moment between the provider's acceptance and the client's bookkeeping.
    """

    def __init__(self, port: int | None = None):
        from aiosmtpd.controller import Controller

        self.port = port or free_port()
        self.messages: list = []
        self.mode = "accept"
        self.reply = "250 OK"
        self.delay = 0.0
        self.on_message: Callable[[], None] | None = None
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
                if sink.on_message is not None:
                    sink.on_message()
                if sink.mode == "late":
                    sink.mode = "accept"
                    while not sink._released.is_set():
                        await asyncio.sleep(0.05)
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


@dataclass
class Block:
    """One block of an event stream: an event (`data`, with its `id` if sent), a comment (`: …`)
    or a field such as `retry`, in the order the server wrote them."""

    lines: list[str]

    def field(self, name: str) -> str | None:
        values = [
            line.partition(":")[2].lstrip(" ") for line in self.lines if line.startswith(name + ":")
        ]
        return "\n".join(values) if values else None

    @property
    def id(self) -> str | None:
        return self.field("id")

    @property
    def data(self) -> str | None:
        return self.field("data")

    @property
    def is_ping(self) -> bool:
        return self.lines == [": ping"]

    def json(self):
        return json.loads(self.data)


class SseClient:
    """GET of an event stream, read block by block (blocks end with a blank line)."""

    def __init__(self, server: LiveServer, path: str, headers: dict | None = None, timeout=10):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.connection.request(
            "GET", path, headers={"Accept": "text/event-stream", **(headers or {})}
        )
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers  # case-insensitive, as HTTP header names are

    def block(self) -> Block:
        lines = []
        while True:
            raw = self.response.readline()
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if lines:
                    return Block(lines)
                continue
            lines.append(line)

    def events(self, count: int, within: float = 60.0) -> list[Block]:
        """The next `count` events (comments and fields in between are skipped). Fails after
        `within` seconds: the stream's pings keep the socket's own timeout from ever firing,
        so a lost event would otherwise hang the test run."""
        deadline = time.monotonic() + within
        events = []
        while len(events) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(events)} of {count} events within {within} s")
            block = self.block()
            if block.data is not None:
                events.append(block)
        return events

    def events_until_ping(self) -> list[Block]:
        """The events sent before the next ping: the poller publishes in id order, so an event
        recorded before the last one read would have come before it."""
        events = []
        while not (block := self.block()).is_ping:
            if block.data is not None:
                events.append(block)
        return events

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
