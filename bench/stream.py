"""The event stream scenario of `make bench` (`--only stream` runs it alone).

Production's layout on one host: gunicorn (sync workers) answers the send API, uvicorn (one
process, fluxomail.asgi) serves GET /api/v1/events/stream, both on the same PostgreSQL. Each
round measures fresh sends (the fresh_small load) four times, in the order A B B A: with no
stream open (A), and with STREAMS streams of the sending organization open (B;
bench/sse_clients.py, its own process), each of them receiving every event. Reported: send
throughput with streams over without (the target is at least 0.9), the cores the server and
the clients used, the delivery latency of an event to each subscriber (p50, p90, p99, max:
under 1 s), and whether every stream received exactly the events recorded while it was open,
once each and in id order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.run import (
    BIN,
    ROOT,
    SCENARIOS,
    Gunicorn,
    free_port,
    log,
    median,
    pg,
    run_slice,
    service_env,
)

STREAMS = 200


class Uvicorn(Gunicorn):
    """The ASGI server, started as the README's production command does (stopped as gunicorn
    is: its process group)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "uvicorn"), "fluxomail.asgi:application", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--workers", "1", "--timeout-graceful-shutdown", "2"],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "fluxomail.settings"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"uvicorn not ready; see {log_path}")


class Subscribers:
    """STREAMS open streams in their own process, until stop()."""

    def __init__(self, port: int, token: str, workdir: Path, count: int = STREAMS):
        self.out = workdir / f"streams-{os.urandom(3).hex()}.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_clients", str(port), token, str(count)]
            + [str(self.out)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"stream clients failed: {line!r}")

    def stop(self) -> dict:
        self.process.communicate("stop\n", timeout=60)
        return json.loads(self.out.read_text())


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def recorded_ids(dbname: str, args, after_ms: int, until_ms: int) -> list[str]:
    """The events recorded (by id time) in [after_ms, until_ms), in id order."""
    from fluxomail.ids import _base32

    low, high = (f"evt_{_base32(ms, 10)}{'0' * 16}" for ms in (after_ms, until_ms))
    connection = pg(dbname, args)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT public_id FROM sends_event WHERE public_id >= %s AND public_id < %s "
                "ORDER BY public_id",
                [low, high],
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def watched_slice(server, scenario, target, smtp, args, workdir: Path):
    """Fresh sends with STREAMS streams open: the slice, the completeness check of every
    stream, and the delivery latencies."""
    subscribers = Subscribers(server.port, target.tokens[0], workdir)
    opened_ms = int(time.time() * 1000) + 1
    pids = {"uvicorn": server.process.pid, "clients": subscribers.process.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    piece = run_slice(scenario, target, smtp, args, workdir, warmup=0)
    piece["cpu"] = {
        name: (cpu_seconds(pid) - cpu_before[name]) / piece["seconds"] for name, pid in pids.items()
    }
    # Until the last events reached the streams (settle time, polls and fan-out).
    time.sleep(2)
    closed_ms = int(time.time() * 1000) - 1500
    received = subscribers.stop()
    expected = recorded_ids(target.dbname, args, opened_ms, closed_ms)
    # What a stream received within the window (it was open from before opened_ms to after
    # closed_ms): exactly the recorded events, once each, in id order.
    window = [
        [i for i in ids if expected and expected[0] <= i <= expected[-1]] for ids in received["ids"]
    ]
    check = {
        "events": len(expected),
        "streams_complete": sum(ids == expected for ids in window),
        "ended_early": received["ended_early"],
    }
    return piece, check, received["latencies_ms"]


def run_stream(args, target, smtp, workdir: Path) -> dict:
    """Rounds of (no streams, STREAMS streams) fresh sends; see the module's docstring."""
    scenario = next(s for s in SCENARIOS if s.name == "fresh_small")
    env = service_env(target.dbname, args, smtp.port)
    server = Uvicorn(env, workdir / "uvicorn.log")
    rounds, latencies, checks = [], [], []
    # At least three rounds (--quick gives two): a round's ratio moves by a tenth with the
    # machine's other work, and the median of two is their mean.
    count = max(args.rounds, 3)
    try:
        for round_ in range(count):
            # A B B A: a drift of the machine's load within the round cancels out.
            slices: dict[str, list[dict]] = {"alone": [], "watched": []}
            for step, kind in enumerate(("alone", "watched", "watched", "alone")):
                label = "no stream open" if kind == "alone" else f"{STREAMS} streams open"
                log(f"round {round_ + 1}/{count} stream {step + 1}/4: {label}")
                if kind == "alone":
                    warmup = args.warmup if round_ == step == 0 else 0.5
                    slices[kind].append(
                        run_slice(scenario, target, smtp, args, workdir, warmup=warmup)
                    )
                    continue
                piece, check, delivered = watched_slice(
                    server, scenario, target, smtp, args, workdir
                )
                slices[kind].append(piece)
                checks.append(check)
                latencies += delivered
            alone = sum(p["rps"] for p in slices["alone"]) / 2
            watched = sum(p["rps"] for p in slices["watched"]) / 2
            rounds.append(
                {
                    "rps_without": round(alone, 1),
                    "rps_with": round(watched, 1),
                    "ratio": round(watched / alone, 3) if alone else None,
                    # Cores busy while the streams were open: the server, and the 200 clients.
                    "cpu_cores_uvicorn": round(
                        sum(p["cpu"]["uvicorn"] for p in slices["watched"]) / 2, 3
                    ),
                    "cpu_cores_clients": round(
                        sum(p["cpu"]["clients"] for p in slices["watched"]) / 2, 3
                    ),
                }
            )
    finally:
        server.stop()
    ratios = [r["ratio"] for r in rounds if r["ratio"] is not None]
    return {
        "streams": STREAMS,
        "rounds": rounds,
        "ratio_with_streams": round(median(ratios), 2) if ratios else None,
        "deliveries": len(latencies),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5), 1),
            "p90": round(percentile(latencies, 0.9), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies, default=0.0), 1),
        },
        "checks": checks,
        "every_stream_complete": all(
            c["streams_complete"] == STREAMS and not c["ended_early"] for c in checks
        ),
    }


def print_stream(report: dict) -> None:
    latency = report["latency_ms"]
    print(
        f"\nstream: {report['streams']} open streams, send throughput ratio "
        f"{report['ratio_with_streams']} (rounds: "
        + ", ".join(f"{r['rps_with']}/{r['rps_without']}" for r in report["rounds"])
        + "; cores busy, uvicorn/clients: "
        + ", ".join(f"{r['cpu_cores_uvicorn']}/{r['cpu_cores_clients']}" for r in report["rounds"])
        + f"); {report['deliveries']} deliveries, latency ms p50 {latency['p50']} "
        f"p90 {latency['p90']} p99 {latency['p99']} max {latency['max']}; every stream got "
        f"every event once, in order: {'yes' if report['every_stream_complete'] else 'NO'}"
    )
