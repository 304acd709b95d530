"""make run's job queue (kombu's filesystem transport, fluxomail/filebroker.py): a worker never
reads a message before it is written whole."""

import os
import threading
from queue import Empty

from kombu import Connection

from fluxomail import filebroker


def connection(tmp_path) -> Connection:
    folder = tmp_path / "queue"
    folder.mkdir(exist_ok=True)
    return Connection(
        "filesystem://",
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(tmp_path),
            "store_processed": False,
        },
    )


def test_filesystem_urls_use_the_transport_that_writes_whole_messages(tmp_path):
    import fluxomail.celery  # noqa: F401  (installs the alias, as every Django process does)

    with connection(tmp_path) as conn:
        assert isinstance(conn.transport, filebroker.Transport)
        assert isinstance(conn.default_channel, filebroker.Channel)


def test_no_reader_can_take_a_message_before_it_is_whole(tmp_path, monkeypatch):
    """At the moment the message gets the name a reader takes, its file is already complete,
    and until then the folder holds nothing under such a name."""
    folder = tmp_path / "queue"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        names = os.listdir(folder)
        seen.append(([n for n in names if n.endswith(".jobs.msg")], open(src, "rb").read()))
        real_replace(src, dst)

    monkeypatch.setattr(filebroker.os, "replace", replace)
    payload = {"body": "x" * 100_000, "n": 1}
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        channel._put("jobs", payload)
        assert len(seen) == 1
        readable_before, written = seen[0]
        assert readable_before == []
        assert written.endswith(b"}") and len(written) > 100_000
        assert channel._get("jobs") == payload
        assert os.listdir(folder) == []


def test_a_reader_racing_a_writer_reads_every_message_whole(tmp_path):
    """kombu's own channel fails this now and then (JSONDecodeError on an empty file)."""
    messages = 300
    with connection(tmp_path) as writer_conn, connection(tmp_path) as reader_conn:
        writer = writer_conn.default_channel
        reader = reader_conn.default_channel

        def write():
            for n in range(messages):
                writer._put("jobs", {"n": n, "body": "y" * 50_000})

        thread = threading.Thread(target=write)
        thread.start()
        got = []
        while len(got) < messages:
            try:
                got.append(reader._get("jobs")["n"])
            except Empty:
                pass
        thread.join()
    assert sorted(got) == list(range(messages))


def test_an_acknowledgement_lets_a_worker_at_its_prefetch_limit_take_the_next_message(tmp_path):
    """A worker holding its prefetch limit of messages finds none to take and waits before it
    looks again; the acknowledgement of one of them (from the pool's result thread) ends that
    wait. kombu's own transport slept the whole polling interval (or, here, the whole drain):
    a worker of 2 processes took at most 2 messages per 0.1 s."""
    from kombu import Exchange, Queue

    queue = Queue("jobs", Exchange("jobs"), "jobs")
    with connection(tmp_path) as conn:
        conn.transport.polling_interval = 30.0  # longer than this test may take
        producer = conn.Producer()
        for n in range(2):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="jobs", declare=[queue])
        received = []
        consumer = conn.Consumer(queue, callbacks=[lambda body, message: received.append(message)])
        consumer.qos(prefetch_count=1)
        consumer.consume()
        conn.drain_events(timeout=1)
        # Either one: two messages written in the same millisecond are taken in name order.
        assert len(received) == 1

        outcome = []

        def drain():
            try:
                conn.drain_events(timeout=30)
                outcome.append("delivered")
            except TimeoutError:
                outcome.append("timed out")

        waiting = threading.Thread(target=drain)
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and received[1:] == []  # at the limit: nothing taken
        received[0].ack()
        waiting.join(10)

    assert outcome == ["delivered"]
    assert sorted(m.payload["n"] for m in received) == [0, 1]
