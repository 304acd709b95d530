"""Queued delivery (DELIVERY_MODE=queue, or a policy's override): the request stores the send
and its job and answers `{"status": "queued", "messageId": null}`; a worker renders and
delivers it.

- `accept()` writes the send (status queued), its QueuedSend job and the idempotency record's
  answer in one transaction (on PostgreSQL one statement, sends/sql.py: nothing is written
  when the key's lease was lost), and publishes the job after commit (a failed publish is
  picked up by `sweep()`).
- `deliver()` claims the job with a conditional UPDATE (due, unclaimed or its claim run out
  after DELIVERY_CLAIM_SECONDS), so a message delivered twice by the broker acts once and a
  killed worker's job is taken up again. Delivery happens outside any transaction.
- A 4xx deferral or a connection failure records an `email.delayed` event and retries after
  DELIVERY_RETRY_BASE_SECONDS x 2^(n-1) (±20%, at most an hour) until DELIVERY_RETRY_HOURS
  after acceptance; a 5xx, another provider error or the end of the window records
  `email.failed`. The idempotency record's answer follows the send (a replay answers the
  current status), and the job row (with the request's body) goes when the send is final.

A worker killed after the SMTP server accepted the message but before its bookkeeping
committed delivers it once more when the job is taken up again: the same ambiguity as an SMTP
timeout after DATA, never a lost message.
"""

from __future__ import annotations  # sends.services imports this module, and this one it

import base64
import logging
import random
import smtplib
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fluxomail import jobs
from fluxomail.api import IdempotencyInProgress
from fluxomail.middleware import set_request_id
from sends import delivery, events, idempotency, services, sql
from sends.models import Event, IdempotencyRecord, Policy, QueuedSend, Send

logger = logging.getLogger("fluxomail.sends")

MAX_BACKOFF = timedelta(hours=1)


def mode(policy: Policy | None) -> str:
    if policy is not None and policy.delivery_mode:
        return policy.delivery_mode
    return settings.DELIVERY_MODE


def _tasks():
    from sends import tasks  # the tasks import this module

    return tasks


def _payload(data: dict) -> dict:
    """The validated body as JSON (attachments' decoded bytes back in base64)."""
    payload = dict(data)
    if "attachments" in payload:
        payload["attachments"] = [
            {**item, "contentBase64": base64.b64encode(item["contentBase64"]).decode()}
            for item in payload["attachments"]
        ]
    return payload


def _data(payload: dict) -> dict:
    data = dict(payload)
    if "attachments" in data:
        data["attachments"] = [
            {**item, "contentBase64": base64.b64decode(item["contentBase64"])}
            for item in data["attachments"]
        ]
    return data


def answer(send: Send, message_id: str | None = None) -> dict:
    return {
        "sendId": send.public_id,
        "status": send.status,
        "messageId": message_id,
        "reused": False,
    }


def accept(
    *,
    org,
    key,
    endpoint: str,
    data: dict,
    request_id: str,
    record: IdempotencyRecord | None,
    send: Send | None,
    idempotency_key: str | None,
) -> services.SendResult:
    """Stores the send (or re-queues a failed one) and its job; the 200 body says queued."""
    now = timezone.now()
    fields = dict(
        organization=org,
        key=key,
        endpoint=endpoint,
        data=data,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )
    if send is None and sql.enabled():
        # PostgreSQL: the send, its job and the key's answer in one statement (sends/sql.py).
        send = services.new_send(**fields)
        send.status = Send.Status.QUEUED
        job = _job(send, data, now)
        body = answer(send)
        if not sql.enqueue(send=send, job=job, record=record, body=body):
            raise IdempotencyInProgress()  # our claim was taken over: nothing was stored
        jobs.enqueue(_tasks().deliver_queued, job.pk)
        return services.SendResult(body)
    with transaction.atomic():
        if send is None:
            send = services._create_send(**fields)
        send.mark(Send.Status.QUEUED)
        job = _job(send, data, now)
        job.save(force_insert=True)
        body = answer(send)
        if record is not None and not idempotency.complete(record, send, body):
            # Our claim was taken over: the new owner answers for the key; store nothing.
            transaction.set_rollback(True)
            raise IdempotencyInProgress()
        jobs.enqueue(_tasks().deliver_queued, job.pk)
    return services.SendResult(body)


def _job(send: Send, data: dict, now) -> QueuedSend:
    return QueuedSend(
        send=send,
        payload=_payload(data),
        next_attempt_at=now,
        deadline=now + timedelta(hours=settings.DELIVERY_RETRY_HOURS),
        created_at=now,
    )


def backoff(attempts: int) -> timedelta:
    seconds = settings.DELIVERY_RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 20)
    return min(timedelta(seconds=seconds * random.uniform(0.8, 1.2)), MAX_BACKOFF)


def temporary(exc: BaseException) -> bool:
    """A failure worth retrying: an SMTP 4xx, a connection failure or timeout, an ESP's 5xx."""
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        codes = [reply[0] for reply in exc.recipients.values()]
        return all(400 <= c < 500 for c in codes)
    if isinstance(code, int) and code > 0:
        return 400 <= code < 500
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    return isinstance(exc, OSError)  # refused, reset, timed out, disconnected


def deliver(job_pk: int) -> str | None:
    """One delivery attempt of a due job; None when it is not due or another worker has it.
    Returns the send's status afterwards."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS)
    claimed = QueuedSend.objects.filter(jobs.due(now), pk=job_pk).update(
        locked_until=lease, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    job = QueuedSend.objects.select_related("send__organization").get(pk=job_pk)
    send = job.send
    set_request_id(send.request_id or "-")
    organization = send.organization
    policy = Policy.objects.filter(organization=organization, key=send.policy_key).first()
    try:
        message = services._build_message(organization, send, _data(job.payload), policy)
    except Exception as exc:
        logger.error("queued send %s could not be built: %s", send.public_id, type(exc).__name__)
        with transaction.atomic():
            events.record(send=send, type=Event.Type.FAILED, data={"reason": type(exc).__name__})
            _finish(job, send, Send.Status.FAILED)
        return Send.Status.FAILED
    attempt = services.attempt_row(send, message)
    try:
        result = delivery.deliver(message)
    except Exception as exc:
        return _failed(job, send, attempt, message, exc)
    attempt.provider = result.provider
    attempt.provider_message_id = result.message_id
    with transaction.atomic():
        attempt.save(force_insert=True)
        events.record(send=send, message=attempt, type=Event.Type.SENT)
        _finish(job, send, Send.Status.SENT, result.message_id)
    logger.info("queued send %s delivered on attempt %d", send.public_id, job.attempts)
    return Send.Status.SENT


def _failed(job: QueuedSend, send: Send, attempt, message, exc: BaseException) -> str:
    attempt.provider = delivery.provider_name(message.connection) if message.connection else ""
    attempt.error = delivery.safe_error(exc)
    data = delivery.failure_data(exc, attempt.error)
    now = timezone.now()
    retry_at = now + backoff(job.attempts)
    retry = temporary(exc) and retry_at < job.deadline
    with transaction.atomic():
        attempt.save(force_insert=True)
        if retry:
            events.record(send=send, message=attempt, type=Event.Type.DELAYED, data=data)
            QueuedSend.objects.filter(pk=job.pk).update(locked_until=None, next_attempt_at=retry_at)
        else:
            events.record(send=send, message=attempt, type=Event.Type.FAILED, data=data)
            _finish(job, send, Send.Status.FAILED)
    logger.warning(
        "queued send %s attempt %d failed (%s): %s",
        send.public_id,
        job.attempts,
        "retrying" if retry else "final",
        attempt.error,
    )
    return Send.Status.QUEUED if retry else Send.Status.FAILED


def _finish(job: QueuedSend, send: Send, status: str, message_id: str | None = None) -> None:
    """The send is final: its status, the answer a replay gives, and the job (with the
    request's body) gone."""
    send.mark(status)
    IdempotencyRecord.objects.filter(send=send, state=IdempotencyRecord.State.COMPLETED).update(
        response_body=answer(send, message_id)
    )
    job.delete()


def sweep(now=None) -> int:
    """Publishes every due job (at most 500 at a time): those whose message was lost, retries,
    and the jobs of killed workers once their claim ran out."""
    now = now or timezone.now()
    return jobs.publish_due(QueuedSend.objects.filter(jobs.due(now)), _tasks().deliver_queued)
