"""`make bench` (`python -m bench`): Fluxomail's send API against the stack's own limit.

Production parts on this machine: gunicorn (sync workers, 2 x cores by default), PostgreSQL,
Redis, and a counting SMTP server on 127.0.0.1 (aiosmtpd, its own process). Load comes from
wrk in a separate process (bench/load.lua gives every fresh request its own Idempotency-Key).
A queue-mode scenario sends under a policy whose delivery mode is `queue`: it reports the
accepted sends per second at the API, then waits for Celery workers (their own processes,
`--queue-workers`, on the filesystem broker unless CELERY_BROKER_URL names one) to deliver every
one and reports the end-to-end delivery rate.
The baseline is an endpoint of the same server (bench/views.py, registered by bench/settings.py
only) that authenticates the key and validates the body with the send API's serializer but
writes and sends nothing: every scenario is reported as a ratio to it.

Two databases: `flx_bench` is emptied at the start of the run, `flx_bench_1m` holds 1,000,000
sends seeded once with generate_series and kept between runs. Results go to
bench/results/latest.json and a table on stdout. The machine may be shared, so scenarios run
interleaved in rounds (3 x 5 s each by default) and every ratio is taken against the baseline of
its own round; the medians are reported. Bounded: about 4 minutes once the 1M rows exist
(`--quick`: about 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent

SMALL_BODY = {
    "to": "user@example.com",
    "subject": "Hello",
    "content": "Hi there",
    "htmlContent": "<p>Hi there</p>",
}


def styled_html(links: int = 10, size: int = 10_000) -> str:
    """About 10 KB of styled HTML with `links` tracked links: CSS to inline, links to rewrite."""
    style = (
        "<style>body{font-family:Arial,sans-serif;color:#222}"
        ".card{border:1px solid #ddd;padding:16px;margin:8px 0}"
        "h1{font-size:22px;color:#0b5}p{line-height:1.5;margin:0 0 12px}"
        "a.button{background:#0b5;color:#fff;padding:8px 12px;text-decoration:none}"
        "td{padding:4px 8px}.muted{color:#888;font-size:12px}</style>"
    )
    items = "".join(
        f'<div class="card"><h1>Item {i}</h1><p>Lorem ipsum dolor sit amet, consectetur '
        f"adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna.</p>"
        f'<a class="button" href="https://shop.example.com/item/{i}?utm_source=mail&amp;n={i}">'
        f"View item {i}</a></div>"
        for i in range(links)
    )
    html = f"<html><head>{style}</head><body>{items}"
    filler = '<p class="muted">Unsubscribe preferences and legal text for this newsletter.</p>'
    while len(html) + len(filler) + 20 < size:
        html += filler
    return html + "</body></html>"


QUEUED_BODY = {**SMALL_BODY, "policyKey": "queued"}  # bench/fixtures.py: delivery_mode=queue

HTML_BODY = {
    "to": "user@example.com",
    "subject": "Your weekly picks",
    "content": "Your weekly picks: https://shop.example.com/",
    "htmlContent": styled_html(),
}


@dataclass
class Scenario:
    name: str
    description: str
    path: str = "/api/v1/emails/send"
    body: str = "small"  # small | html | queued
    mode: str = "fresh"  # fresh | replay
    keys: int = 1  # API keys the traffic is spread over
    database: str = "empty"  # empty | 1m
    sends_mail: bool = True
    server: str = "app"  # app | ceiling (bench/ceiling.py, the bare WSGI app)


SCENARIOS = [
    Scenario("baseline", "auth + validation, no write, no send", path="/bench/baseline"),
    Scenario("fresh_small", "fresh sends, seed body, one API key"),
    Scenario("fresh_html_10kb", "fresh sends, 10 KB styled HTML, 10 links", body="html"),
    Scenario("replays", "replays of 50 completed keys", mode="replay", sends_mail=False),
    Scenario("fresh_small_50_keys", "fresh sends spread over 50 API keys", keys=50),
    Scenario("fresh_small_1m_rows", "fresh sends, 1,000,000 rows in sends", database="1m"),
    Scenario(
        "events_list_1m",
        "GET /api/v1/events, 1,000,000 events, 8 query shapes in turn",
        path="/api/v1/events",
        body="events",
        mode="get",
        database="1m",
        sends_mail=False,
    ),
    Scenario("queued_small", "fresh sends in queue mode, then delivered by workers", body="queued"),
]
SCENARIOS += [
    Scenario("drf", "A: DRF, trivial serializer, no auth", path="/bench/drf", sends_mail=False),
    Scenario("ceiling", "B: bare WSGI, INSERT + SMTP", path="/ceiling/send", server="ceiling"),
    Scenario(
        "ceiling_insert",
        "B_insert: bare WSGI, INSERT",
        path="/ceiling/insert",
        server="ceiling",
        sends_mail=False,
    ),
]
for _scenario in SCENARIOS:
    if _scenario.path == "/bench/baseline":
        _scenario.sends_mail = False


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- services ---------------------------------------------------------------------------------


def _ok(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def ensure_services(pg_host: str, pg_port: int, redis_port: int) -> None:
    """PostgreSQL and Redis on this machine, installed and started if needed (as .ci/run does)."""
    missing = [
        package
        for command, package in (
            ("pg_ctlcluster", "postgresql"),
            ("redis-server", "redis-server"),
            ("wrk", "wrk"),
        )
        if shutil.which(command) is None
    ]
    if missing:
        log(f"installing {' '.join(missing)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False)
        subprocess.run(
            [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq"]
            + missing,
            check=True,
        )
    if not _ok(["pg_isready", "-q", "-h", pg_host, "-p", str(pg_port)]):
        version = sorted(os.listdir("/etc/postgresql"))[0]
        log(f"starting PostgreSQL {version}")
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
        )
        for _ in range(30):
            if _ok(["pg_isready", "-q", "-h", pg_host, "-p", str(pg_port)]):
                break
            time.sleep(1)
    if not _ok(["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "ping"]):
        log("starting Redis")
        os.makedirs("/var/lib/redis", exist_ok=True)
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port"]
            + [str(redis_port), "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis"],
            check=True,
        )
        for _ in range(30):
            if _ok(["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "ping"]):
                break
            time.sleep(1)


def pg(dbname: str, args: argparse.Namespace):
    import psycopg2

    connection = psycopg2.connect(
        host=args.pg_host, port=args.pg_port, user=args.pg_user, dbname=dbname
    )
    connection.autocommit = True
    return connection


def ensure_database(name: str, args: argparse.Namespace) -> None:
    connection = pg("postgres", args)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def scalar(dbname: str, args: argparse.Namespace, sql: str, params=()) -> int:
    connection = pg(dbname, args)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0] or 0
    finally:
        connection.close()


JOBS_DIR = Path(tempfile.mkdtemp(prefix="flx-bench-jobs-"))


def service_env(dbname: str, args: argparse.Namespace, smtp_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # The job broker of this run, shared by gunicorn and the workers.
        JOBS_DIR=str(JOBS_DIR),
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=f"postgres://{args.pg_user}@{args.pg_host}:{args.pg_port}/{dbname}",
        REDIS_URL=f"redis://127.0.0.1:{args.redis_port}/{args.redis_db}",
        # Production mode: no DEBUG (it keeps every query in memory), a real secret.
        FLUXOMAIL_ENV="production",
        SECRET_KEY="bench-" + os.urandom(16).hex(),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SITE_URL="http://127.0.0.1:8000",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        EMAIL_TIMEOUT="10",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def manage(env: dict[str, str], *command: str) -> str:
    result = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# -- processes --------------------------------------------------------------------------------


class SmtpCounter:
    def __init__(self):
        self.port = free_port()
        self.count_file = Path(tempfile.mkdtemp(prefix="flx-bench-")) / "count"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.smtp", str(self.port), str(self.count_file)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def count(self) -> int:
        try:
            return int(self.count_file.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def settled(self, quiet: float = 0.6, limit: float = 20.0) -> int:
        """The count once it has stopped moving (in-flight deliveries finished)."""
        deadline = time.monotonic() + limit
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Workers:
    """Celery workers delivering the queued sends (one process with `concurrency` children)."""

    def __init__(self, env: dict[str, str], concurrency: int, log_path: Path):
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "fluxomail", "worker", "--loglevel=WARNING",
             f"--concurrency={concurrency}", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        stop_group(self.process)
        self.log.close()


def stop_group(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM to the process group of `process` (started with start_new_session), SIGKILL
    after `grace` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class Gunicorn:
    def __init__(
        self, env: dict[str, str], workers: int, log_path: Path, app: str = "fluxomail.wsgi"
    ):
        self.port = free_port()
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                app,
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--no-control-socket",
                "--timeout",
                "30",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200 and len(self.worker_pids()) == workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"gunicorn not ready; see {log_path}")

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        stop_group(self.process)
        self.log.close()


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class RssSampler(threading.Thread):
    """Peak resident memory of each gunicorn worker during one scenario (sampled every 100 ms:
    VmHWM would carry the peak of earlier scenarios)."""

    def __init__(self, server: Gunicorn):
        super().__init__(daemon=True)
        self.server = server
        self.peaks: dict[int, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for pid in self.server.worker_pids():
                self.peaks[pid] = max(self.peaks.get(pid, 0), rss_kib(pid))
            time.sleep(0.1)

    def stop(self) -> dict[int, int]:
        self.halt.set()
        self.join()
        return self.peaks


def wrk(
    url: str,
    *,
    body_file: Path,
    mode: str,
    tokens: list[str],
    prefix: str,
    duration: float,
    connections: int,
    threads: int,
    replay_keys: int = 50,
) -> dict:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(BENCH / "load.lua"),
        url,
        "--",
        str(body_file),
        mode,
        ",".join(tokens),
        prefix,
        str(replay_keys),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    match = re.search(r"^BENCH_JSON (.*)$", result.stdout, re.MULTILINE)
    if match is None:
        raise SystemExit(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(match.group(1))


def post(url: str, token: str, body: dict, key: str) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key,
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


# -- the run ----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        pass

    def version(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    os_name = "unknown"
    try:
        os_name = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": version(["psql", "--version"]),
        "redis": version(["redis-server", "--version"]),
        "wrk": version(["wrk", "--version"]),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip() or "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2 * cores, help="gunicorn workers")
    parser.add_argument("--rounds", type=int, default=3, help="measured slices per scenario")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per slice")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the first")
    parser.add_argument("--connections", type=int, default=0, help="default: 2 x workers")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rows", type=int, default=1_000_000, help="sends in the big table")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenario names, `stream` for the stream scenario (default: all)",
    )
    parser.add_argument(
        "--queue-workers", type=int, default=cores, help="Celery worker processes (queue mode)"
    )
    parser.add_argument("--pg-host", default=os.environ.get("BENCH_PG_HOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PG_PORT", 5432)))
    parser.add_argument("--pg-user", default=os.environ.get("BENCH_PG_USER", "postgres"))
    parser.add_argument("--db", default="flx_bench", help="the emptied database")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-up: about 2 minutes"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 2, 3.0, 1.0
    args.connections = args.connections or 2 * args.workers
    return args


def prepare(dbname: str, args: argparse.Namespace, smtp: SmtpCounter, keys: int, rows: int):
    ensure_database(dbname, args)
    env = service_env(dbname, args, smtp.port)
    manage(env, "manage.py", "migrate", "--noinput")
    started = time.monotonic()
    data = json.loads(manage(env, "-m", "bench.fixtures", str(keys), str(rows)).splitlines()[-1])
    if rows:
        log(f"{dbname}: {data['sends']} sends ({time.monotonic() - started:.1f} s to prepare)")
    return env, data["tokens"]


def empty_tables(dbname: str, args: argparse.Namespace) -> None:
    connection = pg(dbname, args)
    try:
        with connection.cursor() as cursor:
            # Sends and everything that points at them; usage counters start at zero too.
            cursor.execute(
                "TRUNCATE sends_send, sends_idempotencyrecord, usage_usagecounter, "
                "usage_usagerejection RESTART IDENTITY CASCADE"
            )
    finally:
        connection.close()


@dataclass
class Target:
    """One server and its database, with the API keys issued for this run."""

    name: str
    dbname: str
    server: Gunicorn
    tokens: list[str]
    primed: set


# GET /api/v1/events in turn with these queries (every shape of bench/explain.py's report).
EVENT_QUERIES = [
    "",
    "?types=email.bounced",
    "?types=email.bounced&types=email.delayed",
    "?domain=example3.com",
    "?smtpCode=550",
    "?mtaHost=mx3.example.net",
    "?types=email.opened&domain=example2.com",
    "?limit=100",
]


def write_body(scenario: Scenario, workdir: Path, body: dict) -> Path:
    """The file bench/load.lua reads: the JSON body of a POST, or the paths of a GET (mode
    "get", one a line)."""
    body_file = workdir / f"{scenario.body}.json"
    if scenario.mode == "get":
        body_file.write_text("\n".join(scenario.path + query for query in EVENT_QUERIES))
    else:
        body_file.write_text(json.dumps(body))
    return body_file


def run_slice(
    scenario: Scenario,
    target: Target,
    smtp: SmtpCounter,
    args: argparse.Namespace,
    workdir: Path,
    *,
    warmup: float,
) -> dict:
    """One measured slice of a scenario; the SMTP and database counts are settled after it."""
    body = {"html": HTML_BODY, "queued": QUEUED_BODY}.get(scenario.body, SMALL_BODY)
    body_file = write_body(scenario, workdir, body)
    tokens = target.tokens[: scenario.keys]
    url = target.server.url + scenario.path
    replay_prefix = f"replay-{RUN_ID}-{scenario.name}"
    if scenario.mode == "replay" and scenario.name not in target.primed:
        for index in range(50):
            post(url, tokens[0], body, f"{replay_prefix}-{index}")
        target.primed.add(scenario.name)
    prefix = (
        replay_prefix if scenario.mode == "replay" else f"{scenario.name}-{os.urandom(4).hex()}"
    )
    common = dict(
        body_file=body_file,
        mode=scenario.mode,
        tokens=tokens,
        prefix=prefix,
        connections=args.connections,
        threads=args.threads,
    )
    queued = scenario.body == "queued"
    if warmup > 0:
        warm_prefix = prefix if scenario.mode == "replay" else f"warm-{prefix}"
        wrk(url, duration=warmup, **{**common, "prefix": warm_prefix})
        if queued:
            drain(target, args)
    smtp_before = smtp.settled()
    table, accepted_sql = (
        ("bench_ceiling", "TRUE")
        if scenario.server == "ceiling"
        else ("sends_send", "status = 'sent'")
    )
    last_id = scalar(target.dbname, args, f"SELECT max(id) FROM {table}")
    cpu = CpuMeter(target, smtp, args)
    sampler = RssSampler(target.server)
    sampler.start()
    started = time.monotonic()
    stats = wrk(url, duration=args.duration, **common)
    peaks = sampler.stop()
    delivered_in = None
    if queued:
        drain(target, args, last_id)
        delivered_in = time.monotonic() - started
    smtp_received = smtp.settled() - smtp_before
    cpu_ms = cpu.stop()
    accepted_query = f"SELECT count(*) FROM {table} WHERE id > %s AND {accepted_sql}"
    accepted = scalar(target.dbname, args, accepted_query, [last_id])
    # On a loaded machine a worker may commit `sent` a while after the SMTP count settled.
    deadline = time.monotonic() + 10
    while scenario.sends_mail and accepted < smtp_received and time.monotonic() < deadline:
        time.sleep(0.2)
        accepted = scalar(target.dbname, args, accepted_query, [last_id])
    created = scalar(target.dbname, args, f"SELECT count(*) FROM {table} WHERE id > %s", [last_id])
    seconds = stats["duration_us"] / 1e6
    ok = stats["statuses"].get("200", 0)
    # wrk stops with requests in flight: the server still completes them (at most one per
    # connection), so the client's 200s may trail the database's accepted sends by that much;
    # twice that with a warm-up, whose last requests may finish after last_id was read.
    slack = args.connections * (2 if warmup > 0 else 1)
    if scenario.sends_mail:
        consistent = smtp_received == accepted and 0 <= accepted - ok <= slack
    elif scenario.server == "ceiling":
        consistent = smtp_received == 0 and 0 <= created - ok <= slack
    else:
        consistent = smtp_received == 0 and created == 0
    return {
        "seconds": seconds,
        "ok": ok,
        "rps": ok / seconds,
        # Queue mode: from the first request to the last delivery, sends delivered per second.
        "delivered_per_s": accepted / delivered_in if delivered_in else None,
        "cpu_ms_per_request": {part: ms / max(1, stats["requests"]) for part, ms in cpu_ms.items()},
        "stats": stats,
        "peaks": peaks,
        "created": created,
        "accepted": accepted,
        "smtp_received": smtp_received,
        "consistent": consistent,
    }


def drain(target: Target, args: argparse.Namespace, after_id: int = 0, limit: float = 300) -> float:
    """Waits until the workers delivered every queued send; returns the seconds it took."""
    started = time.monotonic()
    sql = "SELECT count(*) FROM sends_send WHERE id > %s AND status = 'queued'"
    while scalar(target.dbname, args, sql, [after_id]) and time.monotonic() - started < limit:
        time.sleep(0.2)
    return time.monotonic() - started


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """CPU time spent by one scenario's serving processes, read from /proc before and after: the
    gunicorn workers, the PostgreSQL backends of the target's database (persistent connections,
    CONN_MAX_AGE, so they live across the slice) and the SMTP server. Redis is left out: one
    server is shared with other work on this machine."""

    def __init__(self, target: Target, smtp: SmtpCounter, args: argparse.Namespace):
        self.target, self.smtp, self.args = target, smtp, args
        self.before = self.sample()

    def backends(self) -> list[int]:
        connection = pg(self.target.dbname, self.args)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
                return [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()

    def sample(self) -> dict[str, dict[int, int]]:
        return {
            "workers": {pid: cpu_ticks(pid) for pid in self.target.server.worker_pids()},
            "postgres": {pid: cpu_ticks(pid) for pid in self.backends()},
            "smtp": {self.smtp.process.pid: cpu_ticks(self.smtp.process.pid)},
        }

    def stop(self) -> dict[str, float]:
        after = self.sample()
        spent = {}
        for part, pids in after.items():
            ticks = sum(max(0, t - self.before[part].get(pid, 0)) for pid, t in pids.items())
            spent[part] = ticks * 1000 / CLOCK_TICKS
        spent["total"] = sum(spent.values())
        return spent


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summarise(scenario: Scenario, slices: list[dict], baselines: list[float]) -> dict:
    """Medians over the rounds: the machine is shared, and a round's ratio compares figures
    taken seconds apart, so a neighbour's burst moves the figures of one round, not the
    result."""
    stats = [piece["stats"] for piece in slices]
    queries = sum(s["queries"] for s in stats)
    counted = sum(s["counted"] for s in stats)
    statuses: Counter = Counter()
    for s in stats:
        statuses.update({k: v for k, v in s["statuses"].items()})
    peaks = {}
    for piece in slices:
        for pid, kib in piece["peaks"].items():
            peaks[pid] = max(peaks.get(pid, 0), kib)
    ratios = [piece["rps"] / base for piece, base in zip(slices, baselines, strict=True) if base]
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "requests": sum(s["requests"] for s in stats),
        "seconds": round(sum(piece["seconds"] for piece in slices), 1),
        "rps": round(median([piece["rps"] for piece in slices]), 1),
        "rps_per_round": [round(piece["rps"], 1) for piece in slices],
        "delivered_per_s": (
            round(median([piece["delivered_per_s"] for piece in slices]), 1)
            if slices and slices[0]["delivered_per_s"] is not None
            else None
        ),
        "ratio_to_baseline": round(median(ratios), 2) if ratios else None,
        "ratio_per_round": [round(r, 2) for r in ratios],
        "p50_ms": round(median([s["p50_us"] for s in stats]) / 1000, 1),
        "p90_ms": round(median([s["p90_us"] for s in stats]) / 1000, 1),
        "p99_ms": round(median([s["p99_us"] for s in stats]) / 1000, 1),
        "errors": sum(s["socket_errors"] + s["timeouts"] + s["non_2xx"] for s in stats),
        "statuses": dict(statuses),
        "queries_per_request": round(queries / counted, 2) if counted else None,
        "peak_rss_mib_per_worker": round(max(peaks.values(), default=0) / 1024, 1),
        "peak_rss_mib_workers": sorted(round(v / 1024, 1) for v in peaks.values()),
        "sends_created": sum(piece["created"] for piece in slices),
        "sends_accepted": sum(piece["accepted"] for piece in slices),
        "smtp_received": sum(piece["smtp_received"] for piece in slices),
        "smtp_matches_accepted": all(piece["consistent"] for piece in slices),
        "cpu_ms_per_request": {
            part: round(median([piece["cpu_ms_per_request"][part] for piece in slices]), 2)
            for part in ("total", "workers", "postgres", "smtp")
        },
    }


TARGETS = [
    ("fresh small / baseline", "fresh_small", None, 0.30),
    ("replays / baseline", "replays", None, 0.70),
    ("one key / 50 keys", "fresh_small", "fresh_small_50_keys", 0.90),
    ("1M rows / empty", "fresh_small_1m_rows", "fresh_small", 0.90),
    ("10 KB HTML / baseline", "fresh_html_10kb", None, 0.20),
]


def print_table(report: dict) -> None:
    header = (
        f"{'scenario':<22}{'req/s':>9}{'ratio':>7}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
        f"{'errors':>7}{'SQL/req':>8}{'app CPU':>8}{'PG CPU':>7}{'CPU ms':>7}{'RSS MiB':>8}"
        f"{'sent':>7}{'SMTP':>7}  ok"
    )
    print(header)
    print("-" * len(header))
    for row in report["scenarios"]:
        ratio = row.get("ratio_to_baseline")
        print(
            f"{row['scenario']:<22}{row['rps']:>9.1f}{ratio if ratio is not None else '':>7}"
            f"{row['p50_ms']:>8}{row['p90_ms']:>8}{row['p99_ms']:>8}{row['errors']:>7}"
            f"{row['queries_per_request'] or '':>8}{row['cpu_ms_per_request']['workers']:>8}"
            f"{row['cpu_ms_per_request']['postgres']:>7}{row['cpu_ms_per_request']['total']:>7}"
            f"{row['peak_rss_mib_per_worker']:>8}"
            f"{row['sends_accepted']:>7}{row['smtp_received']:>7}"
            f"  {'yes' if row['smtp_matches_accepted'] else 'NO'}"
        )
    for row in report["scenarios"]:
        if row.get("delivered_per_s") is not None:
            print(f"{row['scenario']}: delivered end to end at {row['delivered_per_s']} sends/s")
    print()
    for name, value in report["ratios"].items():
        if name != "null_reasons":
            reason = report["ratios"]["null_reasons"].get(name, "")
            print(f"{name:<26}{value if value is not None else 'null':>8}  {reason}")
    print()
    for item in report["targets"]:
        print(
            f"{item['name']:<26}{item['value']:>6}  target >= {item['target']:<5}"
            f" {'met' if item['met'] else 'NOT met'}"
        )


def stream_targets(stream: dict) -> list[dict]:
    """The stream scenario's goals: throughput kept with 200 streams, delivery under a second."""
    ratio = stream["ratio_with_streams"]
    # Delivery within 1 s, as a ratio like the others: 1 s over the slowest delivery.
    margin = round(1000 / max(stream["latency_ms"]["max"], 1), 2)
    return [
        {"name": "200 streams / none", "value": ratio, "target": 0.9, "met": ratio >= 0.9},
        {"name": "1 s / slowest delivery", "value": margin, "target": 1.0, "met": margin > 1},
    ]


def start_ceiling(dbname: str, env: dict[str, str], args: argparse.Namespace, log_path: Path):
    """Reference B's server (bench/ceiling.py) beside the app's, on the emptied database."""
    from bench.ceiling import TABLE_SQL

    connection = pg(dbname, args)
    try:
        with connection.cursor() as cursor:
            cursor.execute(TABLE_SQL)
            cursor.execute("TRUNCATE bench_ceiling RESTART IDENTITY")
    finally:
        connection.close()
    server = Gunicorn(env, args.workers, log_path, app="bench.ceiling:app")
    return Target("ceiling", dbname, server, ["-"], set())


def round_ratio(by_name: dict, top: str, bottom: str) -> float | None:
    """Median over the rounds of top's req/s over bottom's in the same round."""
    if top not in by_name or bottom not in by_name:
        return None
    pairs = zip(by_name[top]["rps_per_round"], by_name[bottom]["rps_per_round"], strict=True)
    values = [a / b for a, b in pairs if b]
    return round(median(values), 3) if values else None


# name: (numerator scenario, denominator scenario); a missing scenario gives null and a reason.
REFERENCE_RATIOS = {
    "fresh_small_vs_ceiling": ("fresh_small", "ceiling"),
    "html_vs_fresh": ("fresh_html_10kb", "fresh_small"),
    "replay_vs_drf": ("replays", "drf"),
    "baseline_vs_drf": ("baseline", "drf"),
    "queue_accept_vs_insert": ("queued_small", "ceiling_insert"),
    "fresh_small_vs_drf": ("fresh_small", "drf"),
}


def reference_ratios(by_name: dict, hostile_report: dict | None = None) -> dict:
    """The top-level `ratios` of latest.json (the one writer of it): the send path against the
    fixed references (A: drf, B: ceiling, B_insert: ceiling_insert), per-round medians."""
    ratios: dict = {}
    reasons: dict = {}
    for name, (top, bottom) in REFERENCE_RATIOS.items():
        ratios[name] = round_ratio(by_name, top, bottom)
        if ratios[name] is None:
            absent = [s for s in (top, bottom) if s not in by_name]
            reasons[name] = f"scenario {', '.join(absent)} not run or not present on this branch"
    # The hostile phase's worst latency over the fresh small sends' p50 (bench/hostile_run.py).
    worst = hostile_report["worst_vs_fresh_p50"] if hostile_report else None
    ratios["hostile_worst_vs_fresh"] = worst
    if worst is None:
        reasons["hostile_worst_vs_fresh"] = "the hostile phase did not run (--only without it)"
    # App CPU, as issue 15 defines it (its table gives PostgreSQL's apart): the gunicorn workers.
    # The total with PostgreSQL's backends and the SMTP server is kept beside it.
    fresh = by_name.get("fresh_small")
    cpu = fresh["cpu_ms_per_request"] if fresh else {}
    ratios["cpu_ms_fresh_small"] = cpu.get("workers")
    ratios["cpu_ms_fresh_small_total"] = cpu.get("total")
    if fresh is None:
        reasons["cpu_ms_fresh_small"] = "scenario fresh_small not run"
    ratios["null_reasons"] = reasons
    return ratios


RUN_ID = os.urandom(4).hex()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    os.chdir(ROOT)
    ensure_services(args.pg_host, args.pg_port, args.redis_port)
    info = machine()
    wanted = {name for name in args.only.split(",") if name} | {"baseline"}
    scenarios = [s for s in SCENARIOS if not args.only or s.name in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="flx-bench-"))
    gunicorn_log = workdir / "gunicorn.log"
    smtp = SmtpCounter()
    workers: Workers | None = None
    targets: dict[str, Target] = {}
    slices: dict[str, list[dict]] = {s.name: [] for s in scenarios}
    baselines: dict[str, list[float]] = {s.name: [] for s in scenarios}
    subprocess.run(
        ["redis-cli", "-p", str(args.redis_port), "-n", str(args.redis_db), "flushdb"],
        capture_output=True,
    )
    try:
        for database in ("empty", "1m"):
            if not any(s.database == database for s in scenarios):
                continue
            dbname = args.db if database == "empty" else f"{args.db}_1m"
            rows = args.rows if database == "1m" else 0
            env, tokens = prepare(dbname, args, smtp, 50, rows)
            if database == "empty":
                empty_tables(dbname, args)
            server = Gunicorn(env, args.workers, gunicorn_log)
            targets[database] = Target(database, dbname, server, tokens, set())
            if database == "empty" and any(s.body == "queued" for s in scenarios):
                workers = Workers(env, args.queue_workers, workdir / "workers.log")
            if database == "empty" and any(s.server == "ceiling" for s in scenarios):
                targets["ceiling"] = start_ceiling(dbname, env, args, gunicorn_log)
        # Rounds: every scenario once per round, the baseline first, the order rotated from
        # round to round; each scenario's ratio is taken against its own round's baseline.
        others = [s for s in scenarios if s.name != "baseline"]
        baseline = next(s for s in scenarios if s.name == "baseline")
        for round_ in range(args.rounds):
            shift = round_ % len(others) if others else 0
            order = [baseline, *others[shift:], *others[:shift]]
            base_rps = None
            for scenario in order:
                log(f"round {round_ + 1}/{args.rounds} {scenario.name}")
                piece = run_slice(
                    scenario,
                    targets["ceiling" if scenario.server == "ceiling" else scenario.database],
                    smtp,
                    args,
                    workdir,
                    warmup=args.warmup if round_ == 0 else 0.5,
                )
                if scenario is baseline:
                    base_rps = piece["rps"]
                slices[scenario.name].append(piece)
                baselines[scenario.name].append(base_rps)
        hostile_report = None
        if not args.only or "hostile" in args.only.split(","):
            from bench.hostile_run import run_hostile

            fresh = [piece["stats"].get("p50_us") for piece in slices.get("fresh_small", [])]
            fresh = [value for value in fresh if value]
            fresh_p50_ms = round(median(fresh) / 1000, 1) if fresh else None
            target = targets["empty"]
            hostile_report = run_hostile(
                target.server.url + "/api/v1/emails/send",
                target.tokens[0],
                args.connections,
                fresh_p50_ms,
                SMALL_BODY,
            )
        stream_report = None
        if not args.only or "stream" in args.only.split(","):
            from bench.stream import run_stream

            stream_report = run_stream(args, targets["empty"], smtp, workdir)
    finally:
        for target in targets.values():
            target.server.stop()
        if workers is not None:
            workers.stop()
        smtp.stop()

    results = [summarise(s, slices[s.name], baselines[s.name]) for s in scenarios]
    by_name = {row["scenario"]: row for row in results}
    target_rows = []
    for name, top, bottom, goal in TARGETS:
        if top not in by_name or (bottom is not None and bottom not in by_name):
            continue
        if bottom is None:
            value = by_name[top]["ratio_to_baseline"]
        else:
            # Both figures relative to their rounds' baselines, then compared.
            value = round(
                median(
                    [
                        a / b
                        for a, b in zip(
                            by_name[top]["ratio_per_round"],
                            by_name[bottom]["ratio_per_round"],
                            strict=True,
                        )
                        if b
                    ]
                ),
                2,
            )
        target_rows.append({"name": name, "value": value, "target": goal, "met": value >= goal})
    if stream_report is not None:
        target_rows += stream_targets(stream_report)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": info,
        "settings": {
            "workers": args.workers,
            "worker_class": "sync",
            "connections": args.connections,
            "wrk_threads": args.threads,
            "rounds": args.rounds,
            "seconds_per_slice": args.duration,
            "warmup_s": args.warmup,
            "rows_in_big_table": args.rows,
            # The service's settings that change the send path's cost, from the environment.
            "css_inliner": os.environ.get("CSS_INLINER", "premailer"),
            "database_prepared_statements": os.environ.get("DATABASE_PREPARED_STATEMENTS", "true"),
        },
        "baseline_rps": by_name["baseline"]["rps"],
        "scenarios": results,
        "stream": stream_report,
        "targets": target_rows,
        "ratios": reference_ratios(by_name, hostile_report),
        "hostile": hostile_report,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}; "
        f"{args.workers} sync workers, {args.connections} connections, "
        f"{args.rounds} rounds of {args.duration:.0f} s per scenario (medians); "
        f"CSS_INLINER={report['settings']['css_inliner']}, "
        f"DATABASE_PREPARED_STATEMENTS={report['settings']['database_prepared_statements']}"
    )
    print_table(report)
    if stream_report is not None:
        from bench.stream import print_stream

        print_stream(stream_report)
    if hostile_report is not None:
        from bench.hostile_run import print_hostile

        print_hostile(hostile_report)
    print(f"\nwritten {args.out} in {report['total_seconds']} s (gunicorn log: {gunicorn_log})")
    consistent = all(row["smtp_matches_accepted"] for row in results)
    if stream_report is not None:
        consistent = consistent and stream_report["every_stream_complete"]
    return 0 if consistent else 1
