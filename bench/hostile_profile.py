"""Times every hostile body in one process: `python -m bench.hostile_profile [--db NAME]
[--cprofile SHAPE] [--repeat N]`.

Same settings as `make bench` (bench.settings, PostgreSQL, Redis, the counting SMTP server); each
body of `bench.hostile_run.hostile_bodies()` goes through Django's full middleware stack with the
test client, and its wall time is printed beside the status, so that the shapes can be compared
without the concurrency and the neighbours of a live run. With --cprofile, the shapes whose name
contains SHAPE are run under cProfile and the slowest functions printed.
"""

import argparse
import cProfile
import json
import pstats
import sys
import time

from bench.profile import in_process_client, post_send
from bench.run import SMALL_BODY, SmtpCounter, parse_args


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_profile")
    parser.add_argument("--cprofile", default="", help="profile the shapes whose name holds this")
    parser.add_argument("--repeat", type=int, default=1, help="requests per shape (the best)")
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime, cumulative")
    options, rest = parser.parse_known_args()
    args = parse_args(rest)
    smtp = SmtpCounter()
    try:
        client, token = in_process_client(args, smtp, "hostile-profile")
        from bench.hostile_run import hostile_bodies

        def send(body: str) -> tuple[float, int]:
            started = time.perf_counter()
            status = post_send(client, token, body).status_code
            return time.perf_counter() - started, status

        small = json.dumps(SMALL_BODY)
        for _ in range(20):  # warm caches, connections and imports
            send(small)
        small_ms = min(send(small)[0] for _ in range(20)) * 1000
        print(f"{'small send':60} {small_ms:9.1f} ms")
        for name, body in hostile_bodies().items():
            if options.cprofile and options.cprofile in name:
                profiler = cProfile.Profile()
                profiler.enable()
                seconds, status = send(body)
                profiler.disable()
                print(f"{name:60} {seconds * 1000:9.1f} ms {status}")
                pstats.Stats(profiler).sort_stats(options.sort).print_stats(25)
                continue
            if options.cprofile:
                continue
            runs = [send(body) for _ in range(options.repeat)]
            seconds, status = min(runs)
            print(
                f"{name[:60]:60} {seconds * 1000:9.1f} ms {status} "
                f"({seconds * 1000 / small_ms:.1f} x small, {len(body) // 1000} KB)"
            )
    finally:
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
