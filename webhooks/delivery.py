"""Fan-out, delivery attempts with retries, the sweeper and the purge (SPEC.md section 11).

- An event reaches the webhooks through `sends.signals.event_recorded` once it is committed:
  `on_event_recorded` publishes a fan-out task when the organization has an enabled endpoint
  (known per process, fluxomail.hotcache: no SQL on the send path in steady traffic). The task
  writes one Delivery row per matching endpoint (a unique (event, endpoint) constraint makes it
  idempotent) and publishes an attempt per row after commit.
- Nothing is lost when that publish fails or the process dies first: the sweeper reads the
  event log from a cursor (FanoutCursor), WEBHOOK_FANOUT_LAG_SECONDS (a minute) behind, and
  fans out every event of an organization with endpoints that has no delivery yet; then it
  publishes every due delivery.
- An attempt claims its row with a conditional UPDATE (due, not claimed or its claim run out),
  so a task that runs twice acts once; a killed worker's claim runs out after CLAIM_SECONDS.
- Retries: WEBHOOK_MAX_ATTEMPTS attempts in all, the n-th retry WEBHOOK_RETRY_BASE_SECONDS x 3^(n-1)
  later with ±20% jitter (90 s, 4.5 min, 13.5 min, 40.5 min: 5 attempts over about an hour).
- After WEBHOOK_DISABLE_AFTER deliveries in a row ran out of attempts, the endpoint is disabled
  with the reason; a success resets the count.
"""

import json
import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from fluxomail import hotcache, jobs
from fluxomail.ids import first_id_at, new_id
from sends.events import envelope, iso
from sends.models import Event
from webhooks import signing, targets
from webhooks.models import Attempt, Delivery, Endpoint, FanoutCursor

logger = logging.getLogger("fluxomail.webhooks")

Status = Delivery.Status
CLAIM_SECONDS = 120  # longer than one attempt can take (WEBHOOK_TIMEOUT_SECONDS and bookkeeping)
SWEEP_BATCH = 500
TEST_EVENT_TYPE = "webhook.test"


def _tasks():
    from webhooks import tasks  # the tasks import this module

    return tasks


# Whether an organization has an enabled endpoint, per process for at most HOT_CACHE_SECONDS.
_WITH_ENDPOINTS = hotcache.HotCache()


def has_endpoints(organization_id: int) -> bool:
    return _WITH_ENDPOINTS.get(
        organization_id,
        lambda: Endpoint.objects.filter(organization_id=organization_id, enabled=True).exists(),
    )


def on_event_recorded(sender, event: Event, **kwargs) -> None:
    # Most organizations have no endpoint: no task for their events (a publish costs more CPU
    # than the rest of the send's bookkeeping). An endpoint created a moment ago on another
    # host, not yet known here, gets the event from the sweeper (catch_up), as after a failed
    # publish; a save in this process clears the cache (webhooks.apps).
    if has_endpoints(event.organization_id):
        jobs.publish(_tasks().fan_out, event.pk)


def _body(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def fan_out(event: Event) -> list[int]:
    """Writes the event's deliveries (once per endpoint, however often this runs); publishes
    the pending ones after commit. Returns their ids."""
    endpoints = [
        endpoint
        for endpoint in Endpoint.objects.for_org(event.organization_id).filter(enabled=True)
        # Only events recorded after the endpoint was created.
        if endpoint.wants(event.type) and event.public_id >= first_id_at("evt", endpoint.created_at)
    ]
    if not endpoints:
        return []
    body = _body(envelope(event))
    now = timezone.now()
    Delivery.objects.bulk_create(
        [
            Delivery(
                public_id=new_id("whdl"),
                endpoint=endpoint,
                event=event,
                message_id=event.public_id,
                event_type=event.type,
                body=body,
                max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    pending = list(
        Delivery.objects.filter(event=event, status=Status.PENDING, attempts=0).values_list(
            "pk", flat=True
        )
    )
    for pk in pending:
        jobs.enqueue(_tasks().deliver, pk)
    return pending


def send_test(endpoint: Endpoint) -> Delivery:
    """A `webhook.test` envelope to one endpoint: one attempt, no retry, not counted."""
    now = timezone.now()
    message_id = new_id("evt")
    payload = {
        "id": message_id,
        "type": TEST_EVENT_TYPE,
        "created": iso(now),
        "data": {"endpointId": endpoint.public_id, "message": "A test event from Fluxomail."},
    }
    delivery = Delivery(
        endpoint=endpoint,
        message_id=message_id,
        event_type=TEST_EVENT_TYPE,
        body=_body(payload),
        max_attempts=1,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    delivery.save(force_insert=True)
    jobs.enqueue(_tasks().deliver, delivery.pk)
    return delivery


def redeliver(delivery: Delivery) -> None:
    """By hand: the delivery gets a fresh set of attempts, starting now."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Status.PENDING,
        max_attempts=F("attempts") + settings.WEBHOOK_MAX_ATTEMPTS,
        next_attempt_at=now,
        locked_until=None,
        updated_at=now,
    )
    jobs.enqueue(_tasks().deliver, delivery.pk)


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    seconds = settings.WEBHOOK_RETRY_BASE_SECONDS * 3 ** (attempts - 1)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def _due(now) -> Q:
    return Q(status=Status.PENDING) & jobs.due(now)


def attempt(delivery_id: int) -> Attempt | None:
    """One attempt of a due delivery; None when it is not due or another worker holds it."""
    now = timezone.now()
    lease = now + timedelta(seconds=CLAIM_SECONDS)
    claimed = Delivery.objects.filter(_due(now), pk=delivery_id).update(
        locked_until=lease, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        return None
    delivery = Delivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None:  # its endpoint was deleted meanwhile
        return None
    endpoint = delivery.endpoint
    mine = Delivery.objects.filter(pk=delivery_id, locked_until=lease)
    if not endpoint.enabled and delivery.event_type != TEST_EVENT_TYPE:
        mine.update(status=Status.FAILED, locked_until=None, next_attempt_at=None)
        return Attempt.objects.create(
            delivery=delivery, number=delivery.attempts, error="The endpoint is disabled."
        )
    body = delivery.body.encode()
    headers = signing.headers(
        endpoint.signing_secrets(now), delivery.message_id, int(now.timestamp()), body
    )
    answer = targets.post(endpoint.url, body, headers)
    with transaction.atomic():
        log = Attempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            status_code=answer.status_code,
            latency_ms=answer.latency_ms,
            response_body=answer.body,
            error=answer.error,
        )
        done = timezone.now()
        if answer.ok:
            mine.update(
                status=Status.SUCCEEDED, locked_until=None, next_attempt_at=None, updated_at=done
            )
            _succeeded(endpoint, delivery)
        elif delivery.attempts >= delivery.max_attempts:
            mine.update(
                status=Status.FAILED, locked_until=None, next_attempt_at=None, updated_at=done
            )
            _ran_out(endpoint, delivery, log)
        else:
            mine.update(
                locked_until=None,
                next_attempt_at=done + backoff(delivery.attempts),
                updated_at=done,
            )
    logger.info(
        "webhook %s to %s attempt %d: %s",
        delivery.public_id,
        endpoint.public_id,
        delivery.attempts,
        answer.status_code or answer.error,
    )
    return log


def _succeeded(endpoint: Endpoint, delivery: Delivery) -> None:
    if delivery.event_type != TEST_EVENT_TYPE:
        Endpoint.objects.filter(pk=endpoint.pk, consecutive_failures__gt=0).update(
            consecutive_failures=0
        )


def _ran_out(endpoint: Endpoint, delivery: Delivery, log: Attempt) -> None:
    if delivery.event_type == TEST_EVENT_TYPE:
        return
    Endpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    limit = settings.WEBHOOK_DISABLE_AFTER
    last = f"HTTP {log.status_code}" if log.status_code else log.error
    reason = (
        f"Disabled on {timezone.now():%Y-%m-%d %H:%M} UTC: every attempt to deliver the last "
        f"{limit} events failed (last answer: {last})."
    )[:500]
    disabled = Endpoint.objects.filter(
        pk=endpoint.pk, enabled=True, consecutive_failures__gte=limit
    ).update(enabled=False, disabled_reason=reason, updated_at=timezone.now())
    if disabled:
        logger.warning("webhook endpoint %s disabled: %s", endpoint.public_id, reason)


def catch_up(now=None) -> int:
    """Fans out the events that no fan-out task handled (broker down, a crash after commit):
    those recorded since the cursor and at least WEBHOOK_FANOUT_LAG_SECONDS ago (a commit
    comes a moment after its event's id was made). Returns how many it read."""
    now = now or timezone.now()
    bound = first_id_at("evt", now - timedelta(seconds=settings.WEBHOOK_FANOUT_LAG_SECONDS))
    cursor = FanoutCursor.objects.filter(name="events").first()
    if cursor is None:
        # The first sweep reads from the oldest endpoint's creation: nothing before matters.
        oldest = Endpoint.objects.order_by("created_at").values_list("created_at", flat=True)
        start = first_id_at("evt", oldest[0]) if oldest else bound
        cursor, _ = FanoutCursor.objects.get_or_create(name="events", defaults={"position": start})
    if cursor.position >= bound:
        return 0
    with_endpoints = Endpoint.objects.filter(enabled=True).values("organization_id")
    events = list(
        Event.objects.filter(
            public_id__gt=cursor.position,
            public_id__lt=bound,
            organization_id__in=with_endpoints,
        )
        .filter(~Exists(Delivery.objects.filter(event=OuterRef("pk"))))
        .select_related("send", "message")
        .order_by("public_id")[:SWEEP_BATCH]
    )
    for event in events:
        fan_out(event)
    position = events[-1].public_id if len(events) == SWEEP_BATCH else bound
    # Conditional: of two sweepers at once, one moves the cursor.
    FanoutCursor.objects.filter(pk=cursor.pk, position=cursor.position).update(position=position)
    return len(events)


def sweep(now=None) -> int:
    """Catches up the fan-out, then publishes every due delivery (at most SWEEP_BATCH)."""
    now = now or timezone.now()
    catch_up(now)
    return jobs.publish_due(Delivery.objects.filter(_due(now)), _tasks().deliver, SWEEP_BATCH)


def _delete_in_batches(queryset, batch: int = 5000) -> int:
    """Deletes in short transactions of `batch` rows, however many there are."""
    deleted = 0
    while True:
        pks = list(queryset.values_list("pk", flat=True)[:batch])
        if not pks:
            return deleted
        deleted += (
            queryset.model.objects.filter(pk__in=pks).delete()[1].get(queryset.model._meta.label, 0)
        )


def purge(now=None) -> int:
    """Deletes attempts, and finished deliveries, older than WEBHOOK_LOG_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_LOG_DAYS)
    attempts = _delete_in_batches(Attempt.objects.filter(created_at__lt=cutoff))
    deliveries = _delete_in_batches(
        Delivery.objects.filter(created_at__lt=cutoff).exclude(status=Status.PENDING)
    )
    return attempts + deliveries
