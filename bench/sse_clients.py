"""Event stream subscribers for `make bench`: `python -m bench.sse_clients PORT TOKEN COUNT OUT`.

Opens COUNT streams (GET /api/v1/events/stream on 127.0.0.1:PORT with the key TOKEN) from one
asyncio process, prints "ready" once every stream has started, then records each event id every
stream receives and when, until a line "stop" arrives on stdin. Writes OUT (JSON): per stream,
the ids in the order received; and the delivery latencies: the receipt time less the time in the
event's id (made just before its transaction committed, so a latency is an upper bound).

These clients stand in for subscribers on other hosts, yet share this machine's two cores with
the server they measure: while streams are open, each one only keeps what it reads with the
time it arrived; the frames are parsed once "stop" has come.
"""

import asyncio
import json
import re
import sys
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID = re.compile(rb"id: (evt_[0-9a-z]{26})\n")


def id_ms(public_id: str) -> int:
    value = 0
    for char in public_id[4:14]:
        value = value * 32 + _ALPHABET.index(char)
    return value


class Subscriber:
    def __init__(self):
        self.reads: list[tuple[float, bytes]] = []  # (receipt time in ms, bytes read)
        self.ids: list[str] = []
        self.latencies_ms: list[float] = []
        self.ended = False

    async def run(self, port: int, token: str, started: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "GET /api/v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"stream refused: {status!r}")
        head = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    self.ended = True
                    return
                self.reads.append((time.time() * 1000, data))
                if not started.is_set():
                    head += data
                    if b"retry: 2000" in head:
                        started.set()
        finally:
            writer.close()

    def parse(self) -> None:
        """Each event id, and its latency: the time of the read that completed its line."""
        buffer = b""
        for now_ms, data in self.reads:
            buffer += data
            cut = buffer.rfind(b"\n") + 1
            for match in _ID.finditer(buffer, 0, cut):
                public_id = match.group(1).decode()
                self.ids.append(public_id)
                self.latencies_ms.append(now_ms - id_ms(public_id))
            buffer = buffer[cut:]


async def main(port: int, token: str, count: int, out: str) -> None:
    subscribers = [Subscriber() for _ in range(count)]
    started = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(s.run(port, token, ready))
        for s, ready in zip(subscribers, started, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in started)), 60)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for subscriber in subscribers:
        subscriber.parse()
    with open(out, "w") as handle:
        json.dump(
            {
                "ids": [s.ids for s in subscribers],
                "latencies_ms": [round(x, 1) for s in subscribers for x in s.latencies_ms],
                "ended_early": sum(s.ended for s in subscribers),
            },
            handle,
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]))
