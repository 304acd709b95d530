"""kombu's filesystem transport (the job queue of `make run`), with each message written whole.

kombu 5.x's `filesystem` channel opens the message file under its final name and then writes
it; a worker listing the folder in between moves the empty file away, reads nothing, and dies
on "Unrecoverable error: JSONDecodeError" (the lock it takes is not one the reader asks for).
Here a message is written under a name no reader takes (`.tmp`, not `.<queue>.msg`) and then
renamed, which is atomic within one folder: a reader sees no file, or the whole message.
`fluxomail/celery.py` makes `filesystem://` mean this transport in every process.

A worker takes the next message as soon as one of its tasks is acknowledged. kombu's loop
(`virtual.Transport.drain_events`) finds nothing to take while the worker holds its prefetch
limit of messages (`worker_prefetch_multiplier` x concurrency, 2 on two cores) and then sleeps
`polling_interval` (0.1 s) whatever happens meanwhile: a worker delivered at most 2 messages per
0.1 s, 20 a second, however short its tasks (the benchmark's queue mode: 19.5 sends/s). Here an
acknowledgement (from the pool's result thread) ends that wait.
"""

import os
import threading
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"{uuid.uuid4()}.tmp")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.remove(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self.connection.wake()

    def basic_reject(self, delivery_tag, requeue=False):
        super().basic_reject(delivery_tag, requeue)
        self.connection.wake()


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self._room = threading.Event()

    def wake(self) -> None:
        """A delivered message was settled: the prefetch limit has room again."""
        self._room.set()

    def drain_events(self, connection, timeout=None):
        # kombu's virtual.Transport.drain_events, its sleep between polls replaced by a wait
        # that wake() ends. The event is cleared before each look, so an acknowledgement that
        # comes between the look and the wait is not missed.
        time_start = monotonic()
        get = self.cycle.get
        polling_interval = self.polling_interval
        if timeout and polling_interval and polling_interval > timeout:
            polling_interval = timeout
        while True:
            self._room.clear()
            try:
                get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - time_start >= timeout:
                    raise TimeoutError() from None  # socket.timeout, as kombu raises
                if polling_interval is not None:
                    self._room.wait(polling_interval)
            else:
                break
