"""`make bench`'s hostile-inputs phase (issue 11): every body of bench/hostile.py, and the
largest document of each family that the CSS-inlining budget accepts, sent by every connection
at once against the same live server, each request timed from Python so that the latency is
known per shape. Before each shape the same connections send one ordinary small send each, in
the same way, so that the denominator is measured under the same load at the same moment: the
worst hostile latency is reported as a ratio to the p50 of those small sends (and, for
reference, to the fresh small scenario's p50 of the run, measured minutes earlier).
"""

import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def timed_post(url: str, token: str, body: str, key: str) -> tuple[float, str]:
    """(seconds, status) of one request; the status is a code, or "error" when none came."""
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key,
        },
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            status = str(response.status)
    except urllib.error.HTTPError as error:
        status = str(error.code)
    except OSError:
        status = "error"
    return time.perf_counter() - started, status


def hostile_bodies() -> dict[str, str]:
    from bench import hostile
    from fluxomail.settings import SEND_MAX_INLINE_WORK

    bodies = hostile.bodies()
    for name, family in hostile.FAMILIES.items():
        html = hostile.largest_accepted(family, SEND_MAX_INLINE_WORK)
        bodies[f"accepted: {name}"] = hostile.html_body(html)
    return bodies


def run_hostile(
    url: str, token: str, connections: int, fresh_p50_ms: float | None, small_body: dict
) -> dict:
    shapes = {}
    small = json.dumps(small_body)
    beside: list[float] = []  # the small sends' latencies, each batch just before a shape

    def batch(body: str) -> list[tuple[float, str]]:
        prefix = f"hostile-{os.urandom(4).hex()}"
        futures = [
            pool.submit(timed_post, url, token, body, f"{prefix}-{index}")
            for index in range(connections)
        ]
        return [future.result() for future in futures]

    with ThreadPoolExecutor(max_workers=connections) as pool:
        for name, body in hostile_bodies().items():
            beside.extend(seconds for seconds, _ in batch(small))
            answers = batch(body)
            worst_ms = round(max(seconds for seconds, _ in answers) * 1000, 1)
            shapes[name] = {
                "bytes": len(body),
                "max_ms": worst_ms,
                "statuses": dict(Counter(status for _, status in answers)),
            }
    beside.sort()
    beside_p50_ms = round(beside[len(beside) // 2] * 1000, 1)
    for row in shapes.values():
        row["vs_small_p50"] = round(row["max_ms"] / beside_p50_ms, 1)
    worst = max(shapes, key=lambda name: shapes[name]["max_ms"])
    worst_ms = shapes[worst]["max_ms"]
    return {
        "small_p50_ms": beside_p50_ms,
        "fresh_p50_ms": fresh_p50_ms,
        "worst_shape": worst,
        "worst_ms": worst_ms,
        "worst_vs_fresh_p50": shapes[worst]["vs_small_p50"],
        "worst_vs_scenario_p50": round(worst_ms / fresh_p50_ms, 1) if fresh_p50_ms else None,
        "server_errors": sum(
            count
            for row in shapes.values()
            for status, count in row["statuses"].items()
            if status == "error" or status.startswith("5")
        ),
        "shapes": shapes,
    }


def print_hostile(report: dict) -> None:
    print(
        f"\nhostile inputs: worst {report['worst_ms']} ms ({report['worst_shape']}), "
        f"{report['worst_vs_fresh_p50']} x the p50 of small sends beside it "
        f"({report['small_p50_ms']} ms; {report['worst_vs_scenario_p50']} x the fresh small "
        f"scenario's p50, {report['fresh_p50_ms']} ms); "
        f"5xx or no answer: {report['server_errors']}"
    )
