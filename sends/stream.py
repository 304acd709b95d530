"""GET /api/v1/events/stream: the organization's events as Server-Sent Events (SPEC.md section 8).

Many open streams, one database poll:
- One poller per process (`Hub`): while anyone listens, a daemon thread reads the events
  recorded since its last look, for every organization at once, every STREAM_POLL_SECONDS,
  turns each into its SSE frame once, and hands it to the in-memory queue of every subscriber
  whose organization and filters it matches. The database's work does not grow with the number
  of streams; idle, the thread stops and lets its connection go.
- Under ASGI (uvicorn) a stream is an async generator awaiting its queue: no worker waits with
  it. Under a threaded WSGI server (runserver, gunicorn's gthread workers) the same stream
  holds its thread; a worker without threads (gunicorn's sync workers) cannot be held for
  hours, so there a stream sends the stored events after its resume point and ends.
- Event ids are made just before their transaction commits, so a later id can become visible
  first. The poller publishes an id once it is older than STREAM_SETTLE_SECONDS (far longer than
  a commit takes), in id order, and re-reads the last STREAM_LOOKBACK_SECONDS against the ids it
  has seen: an event that commits later still is published when it appears. A subscriber that
  has already sent a later id sends such a late event without an `id:` line, so the client's
  Last-Event-ID never moves back (which would repeat events on reconnect).
- Resume (`since` or `Last-Event-ID`): the subscriber registers first (live events queue up),
  then reads every matching event after the resume point from the database in pages of
  STREAM_PAGE, oldest first, up to the settle horizon, then sends the queue; ids already sent
  are skipped, so nothing is lost or repeated across the hand-over.
- Bounded memory: a subscriber queues at most STREAM_QUEUE_MAX events; a client too slow for
  that is disconnected and resumes with Last-Event-ID, from the database.
- A stream's database work (its checks, each catch-up page) takes one of STREAM_DB_CONNECTIONS
  slots per process and closes its connection after: a stream holds no connection while it
  waits, and a burst of reconnecting clients cannot exhaust the database's connections.
- Every STREAM_RECHECK_SECONDS the poller checks the subscribers' keys with one query: a stream
  whose key was revoked or expired, lost read_sends, or whose organization was paused, ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import StreamingHttpResponse
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.models import ApiKey, Organization, Scope
from fluxomail.ids import first_id_at
from sends.event_api import EventFilters, SinceField, event_matcher, page_of_events
from sends.events import envelope
from sends.models import Event

logger = logging.getLogger("fluxomail.stream")

STREAM_PAGE = 100  # events per catch-up query
RETRY = "retry: 2000\n\n"
PING = ": ping\n\n"


def release_connection() -> None:
    """A stream may stay open for hours: it gives back this thread's database connection as soon
    as it has read what it needs (never inside a transaction: tests wrap requests in one)."""
    if not connection.in_atomic_block:
        connection.close()


_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


@contextmanager
def database_slot() -> Iterator[None]:
    """Database work of a stream (its checks, a catch-up page): at most STREAM_DB_CONNECTIONS at
    once per process, each connection closed afterwards. Clients reconnect in bursts (all of
    them after a restart); without a bound, 200 would open 200 connections at once, past
    PostgreSQL's max_connections."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(settings.STREAM_DB_CONNECTIONS)
    with _slots:
        try:
            yield
        finally:
            release_connection()


@dataclass(frozen=True)
class Published:
    """One event as the poller hands it out: what subscribers filter on, its JSON and its SSE
    frame, each made once for every subscriber."""

    public_id: str
    organization_id: int
    event: Event
    data: str
    frame: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "frame", f"id: {self.public_id}\ndata: {self.data}\n\n")

    @classmethod
    def of(cls, event: Event) -> Published:
        data = json.dumps(envelope(event), separators=(",", ":"))
        return cls(event.public_id, event.organization_id, event, data)


class Subscriber:
    """One stream's queue. `offer`/`put` run on the poller's thread; the rest on the stream's
    own (a thread under WSGI, the event loop under ASGI). `filters` names what `matches` keeps:
    subscribers with the same organization and filters share one filtering of each poll."""

    def __init__(
        self,
        *,
        organization_id: int,
        key_id: int,
        matches: Callable[[Event], bool],
        filters: str = "",
    ):
        self.organization_id = organization_id
        self.key_id = key_id
        self.matches = matches
        self.filters = filters
        self.ended = False  # overflowed, or its key is no longer valid
        self._items: list[Published] = []
        self._ascending = True  # _items in id order (each poll's are; a late one breaks it)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | threading.Event = threading.Event()

    def bind_loop(self) -> None:
        """Wakes an asyncio task instead of a thread (call on the event loop)."""
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()

    def mine(self, published: list[Published]) -> list[Published]:
        return [
            item
            for item in published
            if item.organization_id == self.organization_id and self.matches(item.event)
        ]

    def offer(self, published: list[Published]) -> None:
        if self.put(self.mine(published)):
            self._wake()

    def put(self, mine: list[Published]) -> bool:
        """Queues events already filtered for this subscriber; True if it should be woken."""
        if not mine:
            return False
        with self._lock:
            if len(self._items) + len(mine) > settings.STREAM_QUEUE_MAX:
                self._items.clear()
                self.ended = True
            else:
                if self._items and mine[0].public_id <= self._items[-1].public_id:
                    self._ascending = False
                self._items.extend(mine)
        return True

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._loop is None:
            self._ready.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop has closed: the stream is gone
            pass

    def take(self) -> tuple[list[Published], bool]:
        """The queued events, and whether they are in id order."""
        with self._lock:
            items, self._items = self._items, []
            ascending, self._ascending = self._ascending, True
            self._ready.clear()
        return items, ascending

    def wait(self, timeout: float) -> None:
        self._ready.wait(timeout)

    async def wait_async(self, timeout: float) -> None:
        try:
            # A deadline on this task (no task of its own per wait, as wait_for would make).
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            pass


def deliver(subscribers: list[Subscriber], published: list[Published]) -> None:
    """Hands one poll's events to every subscriber: filtered once per (organization, filters),
    and one wake-up call per event loop, not per subscriber."""
    if not published:
        return
    shares: dict[tuple[int, str], list[Published]] = {}
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
    for subscriber in subscribers:
        share_key = (subscriber.organization_id, subscriber.filters)
        if share_key not in shares:
            shares[share_key] = subscriber.mine(published)
        if not subscriber.put(shares[share_key]):
            continue
        if subscriber._loop is None:
            subscriber._ready.set()
        else:
            by_loop.setdefault(subscriber._loop, []).append(subscriber._ready)
    for loop, ready in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_all, ready)
        except RuntimeError:  # the loop has closed: its streams are gone
            pass


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


class _Window(OrderedDict):
    """Ids in the order they were added (mostly oldest first), dropped from the front once older
    than a floor. An OrderedDict, not a dict: a dict keeps the slots of its deleted first items
    until it is resized, so that finding its first item costs as many steps as items were
    dropped before it, and a stream's CPU grew with its age (twice in 20 s under 300 events/s)."""

    def forget_before(self, floor: str) -> None:
        while self and next(iter(self)) < floor:
            self.popitem(last=False)


class Poller:
    """The poller's state: the ids of the look-back window it has already handed out."""

    def __init__(self):
        self.seen = _Window()  # the ids handed out, mostly oldest first

    def poll(self, organization_ids: set[int]) -> list[Published]:
        """The events that became visible since the last poll, in id order, of the given
        organizations. Reads ids only (an index range on public_id) until it finds new ones."""
        now = timezone.now()
        floor = first_id_at("evt", now - timedelta(seconds=settings.STREAM_LOOKBACK_SECONDS))
        horizon = first_id_at("evt", now - timedelta(seconds=settings.STREAM_SETTLE_SECONDS))
        self.seen.forget_before(floor)
        wanted = []
        lower = {"public_id__gte": floor}
        while True:
            rows = list(
                Event.objects.filter(**lower, public_id__lt=horizon)
                .order_by("public_id")
                .values_list("public_id", "organization_id")[:1000]
            )
            for public_id, organization_id in rows:
                if public_id not in self.seen:
                    self.seen[public_id] = None
                    if organization_id in organization_ids:
                        wanted.append(public_id)
            if len(rows) < 1000:
                break
            lower = {"public_id__gt": rows[-1][0]}
        published = []
        for start in range(0, len(wanted), STREAM_PAGE):
            chunk = wanted[start : start + STREAM_PAGE]
            events = Event.objects.filter(public_id__in=chunk).select_related("send", "message")
            published += [Published.of(event) for event in events.order_by("public_id")]
        return published


def valid_key_ids(key_ids: set[int]) -> set[int]:
    """The keys among `key_ids` that may still read events (one query)."""
    keys = ApiKey.objects.active().filter(pk__in=key_ids, organization__paused=False)
    return {key.pk for key in keys.only("pk", "scopes") if key.has_scope(Scope.READ_SENDS)}


class Hub:
    """One per process: the subscribers and the thread that polls for them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.add(subscriber)
            # Started on demand, and anew in a forked child (threads do not survive a fork).
            if self._thread is None or self._pid != os.getpid():
                self._thread = threading.Thread(target=self._run, name="event-stream", daemon=True)
                self._pid = os.getpid()
                self._thread.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def _run(self) -> None:
        poller = Poller()
        next_check = time.monotonic() + settings.STREAM_RECHECK_SECONDS
        try:
            while True:
                with self._lock:
                    subscribers = list(self._subscribers)
                    if not subscribers:
                        self._thread = None
                        return
                started = time.monotonic()
                try:
                    published = poller.poll({s.organization_id for s in subscribers})
                    if started >= next_check:
                        next_check = started + settings.STREAM_RECHECK_SECONDS
                        valid = valid_key_ids({s.key_id for s in subscribers})
                        for subscriber in subscribers:
                            if subscriber.key_id not in valid:
                                subscriber.end()
                except Exception as exc:
                    # The database is away: keep the streams open and try again next time.
                    logger.warning("event stream poll failed: %s", type(exc).__name__)
                    connection.close()
                    published = []
                deliver(subscribers, published)
                elapsed = time.monotonic() - started
                time.sleep(max(0.0, settings.STREAM_POLL_SECONDS - elapsed))
        finally:
            connection.close()


hub = Hub()


class Stream:
    """What one client is sent, in order and once: the catch-up after its resume point, then the
    live events. Produces SSE text; the drivers (`frames`, `frames_async`) do the waiting."""

    def __init__(self, *, organization: Organization, key_id: int, params: dict):
        self.organization = organization
        self.params = params
        if "since" in params:
            self.after, exclusive = params["since"]
            self.catching_up = True
        else:
            # New events only: from the moment of connecting.
            self.after, exclusive = first_id_at("evt", timezone.now()), False
            self.catching_up = False
        self.inclusive = not exclusive
        self.last = self.after  # the newest id sent with an `id:` line
        self._cursor = (self.after, exclusive)
        self._horizon: str | None = None
        # Ids sent within the look-back window by the catch-up or out of order: those that may
        # be offered again (an id the poller hands out in order comes once).
        self.sent = _Window()
        self._next_ping = time.monotonic() + settings.STREAM_PING_SECONDS
        self.subscriber = Subscriber(
            organization_id=organization.pk,
            key_id=key_id,
            matches=event_matcher(params),
            filters=repr(sorted((k, v) for k, v in params.items() if k != "since")),
        )

    def _frame(self, item: Published) -> str:
        if item.public_id in self.sent:
            return ""
        if item.public_id < self.after or (item.public_id == self.after and not self.inclusive):
            return ""
        self.sent[item.public_id] = None
        if item.public_id > self.last:
            self.last = item.public_id
            return item.frame
        # Late (see the module's docstring): no `id:`, so Last-Event-ID stays where it is.
        return f"data: {item.data}\n\n"

    def _forget_old(self) -> None:
        if not self.sent:
            return
        margin = settings.STREAM_LOOKBACK_SECONDS + 2 * settings.STREAM_POLL_SECONDS + 1
        floor = first_id_at("evt", timezone.now() - timedelta(seconds=margin))
        self.sent.forget_before(floor)

    def catch_up(self) -> str:
        """One page of stored events after the cursor, oldest first (a database read)."""
        with database_slot():
            return self._catch_up()

    def _catch_up(self) -> str:
        if self._horizon is None:
            settle = timedelta(seconds=settings.STREAM_SETTLE_SECONDS)
            self._horizon = first_id_at("evt", timezone.now() - settle)
        params = {**self.params, "since": self._cursor}
        page = page_of_events(
            self.organization,
            params,
            limit=STREAM_PAGE,
            newest_first=False,
            public_id__lt=self._horizon,
        )
        if len(page) < STREAM_PAGE:
            self.catching_up = False
        if page:
            self._cursor = (page[-1].public_id, True)
        text = "".join(self._frame(Published.of(event)) for event in page)
        self._forget_old()
        return text

    def live(self) -> str:
        """The queued live events, and a ping when one is due."""
        items, ascending = self.subscriber.take()
        if ascending and items and items[0].public_id > self.last:
            # The usual case, all new and in order: none was sent before (every id sent is at
            # most `last`, which is at least the resume point), and each goes with its `id:`.
            # Not remembered in `sent`: the poller hands out an id once, so only the catch-up
            # can send one again (and it ran before), and a later poll's event that is not
            # newer than `last` takes the careful way below.
            self.last = items[-1].public_id
            text = "".join(item.frame for item in items)
        else:
            text = "".join(self._frame(item) for item in items)
        self._forget_old()
        if time.monotonic() >= self._next_ping:
            text += PING
            self._next_ping = time.monotonic() + settings.STREAM_PING_SECONDS
        return text

    def until_ping(self) -> float:
        return max(0.0, self._next_ping - time.monotonic())

    def frames(self, *, live: bool = True) -> Iterator[str]:
        """The stream for a WSGI server: this thread waits between events. Not `live`: the
        stored events after the resume point, then the end (the client reconnects in 2 s)."""
        if live:
            hub.subscribe(self.subscriber)
        try:
            yield RETRY
            while self.catching_up:
                yield self.catch_up()
            while live and not self.subscriber.ended:
                self.subscriber.wait(self.until_ping())
                if text := self.live():
                    yield text
        finally:
            hub.unsubscribe(self.subscriber)

    async def frames_async(self) -> AsyncIterator[str]:
        """The stream for an ASGI server: waits on the event loop, holding no thread."""
        self.subscriber.bind_loop()
        hub.subscribe(self.subscriber)
        try:
            yield RETRY
            while self.catching_up:
                yield await sync_to_async(self.catch_up)()
            while not self.subscriber.ended:
                await self.subscriber.wait_async(self.until_ping())
                if text := self.live():
                    yield text
        finally:
            hub.unsubscribe(self.subscriber)


class EventStreamRenderer(JSONRenderer):
    """Lets a client that accepts only text/event-stream (an EventSource) be answered: errors
    before the stream are still the JSON problem body."""

    media_type = "text/event-stream"
    format = "sse"


def _resume_point(last_event_id: str) -> tuple[str, bool]:
    try:
        return SinceField().run_validation(last_event_id)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"Last-Event-ID": exc.detail}) from None


class EventStreamView(APIView):
    """Key, scope, paused organization and filters are checked (and answered with a problem)
    before the stream starts; then the stream runs without a database connection."""

    required_scopes = (Scope.READ_SENDS,)
    accepts_query_token = True  # EventSource cannot send headers (accounts.authentication)
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, EventStreamRenderer]
    http_method_names = ["get", "options"]

    def dispatch(self, request, *args, **kwargs):
        with database_slot():
            return super().dispatch(request, *args, **kwargs)

    def get(self, request: Request) -> StreamingHttpResponse:
        params = EventFilters.from_query(request.query_params).validated()
        # Last-Event-ID wins over `since`: an EventSource reconnects to the URL it started with
        # (its `since` included) and adds the header with the last id it received.
        last_event_id = request.headers.get("Last-Event-ID", "").strip()
        if last_event_id:
            params = {**params, "since": _resume_point(last_event_id)}
        stream = Stream(
            organization=request.user.organization, key_id=request.user.key.pk, params=params
        )
        if isinstance(request._request, ASGIRequest):
            frames = stream.frames_async()
        else:
            # A WSGI worker that serves one request at a time (gunicorn's sync workers) would be
            # held, and killed by its timeout: there the stream sends what is stored and ends.
            frames = stream.frames(live=bool(request.META.get("wsgi.multithread")))
        response = StreamingHttpResponse(frames, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        # nginx would buffer the response otherwise.
        response["X-Accel-Buffering"] = "no"
        return response
