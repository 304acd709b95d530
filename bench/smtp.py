"""A counting SMTP server for the benchmark: `python -m bench.smtp PORT COUNT_FILE`.

Accepts every message, keeps none, and writes how many it received to COUNT_FILE (atomically,
at most every 50 ms and once more when idle), so the harness can compare it with the API's
accepted sends.
"""

import asyncio
import os
import sys

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self):
        self.received = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.received += 1
        return "250 OK"


def write(path: str, value: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(str(value))
    os.replace(tmp, path)


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    handler = Counter()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)

    async def report():
        last = -1
        while True:
            if handler.received != last:
                last = handler.received
                write(path, last)
            await asyncio.sleep(0.05)

    write(path, 0)
    try:
        asyncio.run(report())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
