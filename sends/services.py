"""The send workflow after the request has been checked: claim, store, render, deliver, record.

Every statement runs in autocommit (no ATOMIC_REQUESTS): the provider is never called while a
transaction holds a lock, and the Send row exists (status pending) before rendering, because
tracking signs click URLs with the send's public id.
"""

import logging
from dataclasses import dataclass
from email.utils import formataddr, parseaddr

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Organization
from fluxomail.api import InternalError
from sends import delivery, events, idempotency, queue
from sends.models import Event, IdempotencyRecord, Message, Policy, Send
from sends.rendering import render_html

logger = logging.getLogger("fluxomail.sends")


@dataclass
class SendResult:
    body: dict
    replayed: bool = False


def _from_header(organization: Organization, data: dict) -> str:
    name, address = delivery.identity(organization)
    if "fromName" in data:
        name = data["fromName"]
    if data.get("fromEmail"):
        address = data["fromEmail"]
    return formataddr((name, address)) if name else address


def _build_message(
    organization: Organization, send: Send, data: dict, policy: Policy | None
) -> EmailMultiAlternatives:
    message_id = delivery.new_message_id(organization)
    headers = dict(data.get("headers", {}))
    headers["Message-ID"] = message_id
    # Feedback-ID (Gmail's feedback loop): campaign:customer:type:sender, the send id first. The
    # customer is the organization's public slug: its integer pk would tell every recipient how
    # many organizations the service has.
    headers["Feedback-ID"] = f"{send.public_id}:{organization.slug}:{send.policy_key}:fluxomail"
    message = EmailMultiAlternatives(
        subject=data["subject"],
        body=data["content"],
        from_email=_from_header(organization, data),
        to=[data["to"]],
        cc=data.get("cc") or None,
        bcc=data.get("bcc") or None,
        reply_to=[data["replyTo"]] if data.get("replyTo") else None,
        headers=headers,
    )
    html = data.get("htmlContent")
    if html:
        if policy is None:
            # The policy was deleted after the request was validated: no tracking switches on.
            policy = Policy(
                organization=organization,
                key=send.policy_key,
                track_opens=False,
                track_clicks=False,
            )
        message.attach_alternative(render_html(html, send=send, policy=policy), "text/html")
    for attachment in data.get("attachments", []):
        message.attach(
            attachment["filename"],
            attachment["contentBase64"],
            attachment.get("contentType") or None,
        )
    return message


def _create_send(*, organization, key, endpoint, data, request_id, idempotency_key) -> Send:
    now = timezone.now()
    send = Send(
        organization=organization,
        api_key=key,
        endpoint=endpoint,
        to=data["to"],
        cc=data.get("cc", []),
        bcc=data.get("bcc", []),
        subject=data["subject"],
        policy_key=data["policyKey"],
        status=Send.Status.PENDING,
        request_id=request_id,
        idempotency_key=idempotency_key,
        metadata=data.get("metadata", {}),
        created_at=now,
        updated_at=now,
    )
    send.save(force_insert=True)
    return send


def _html_part(message: EmailMultiAlternatives) -> str:
    for content, mimetype in message.alternatives:
        if mimetype == "text/html":
            return content
    return ""


def attempt_row(send: Send, message: EmailMultiAlternatives) -> Message:
    """The (unsaved) Message row of one delivery attempt of `message`."""
    return Message(
        send=send,
        from_email=message.from_email,
        to=[parseaddr(recipient)[1] for recipient in message.recipients()],
        provider="",
        feedback_id=message.extra_headers["Feedback-ID"],
        text=message.body,
        html=_html_part(message),
        headers=dict(message.extra_headers),
    )


def _release(record: IdempotencyRecord | None, send: Send | None) -> bool:
    """Marks the claim failed (retryable); False when another worker took the claim over.

    A worker past the lock timeout must not mark the Send failed either: the new owner of the
    claim may already have delivered it.
    """
    if record is None:
        return True
    return idempotency.fail(record, send)


def send_email(
    *,
    org: Organization,
    key: ApiKey,
    endpoint: str,
    data: dict,
    request_id: str,
    policy: Policy | None = None,
    idempotency_request: idempotency.IdempotencyRequest | None = None,
    idempotency_record: IdempotencyRecord | None = None,
) -> SendResult:
    """Sends validated `data`; returns the 200 body, or raises 409/422/500 (500 names sendId).

    With an idempotency key: `idempotency_record` is what lookup() found (or None); the key is
    claimed here, after validation, and a failed earlier attempt is retried on the same Send.
    """
    record = None
    send = None
    if idempotency_request is not None:
        claimed = idempotency.claim(org, idempotency_request, idempotency_record)
        if isinstance(claimed, idempotency.Replay):
            return SendResult(claimed.body, replayed=True)
        record = claimed
        send = record.send
    if queue.mode(policy) == Policy.DeliveryMode.QUEUE:
        # Queue mode: the send and its job are stored, a worker delivers (sends/queue.py).
        return queue.accept(
            org=org,
            key=key,
            endpoint=endpoint,
            data=data,
            request_id=request_id,
            record=record,
            send=send,
            idempotency_key=idempotency_request.key if idempotency_request else None,
        )
    try:
        if send is None:
            send = _create_send(
                organization=org,
                key=key,
                endpoint=endpoint,
                data=data,
                request_id=request_id,
                idempotency_key=idempotency_request.key if idempotency_request else None,
            )
        message = _build_message(org, send, data, policy)
    except Exception as exc:
        logger.error("send preparation failed: %s", type(exc).__name__, exc_info=exc)
        if _release(record, send) and send is not None:
            send.mark(Send.Status.FAILED)
        extra = {"sendId": send.public_id} if send is not None else {}
        raise InternalError(extra=extra) from exc

    attempt = attempt_row(send, message)
    try:
        result = delivery.deliver(message)
    except Exception as exc:
        attempt.provider = delivery.backend_path(message.connection) if message.connection else ""
        attempt.error = delivery.safe_error(exc)
        attempt.provider_message_id = ""
        attempt.save(force_insert=True)
        events.record(
            send=send,
            message=attempt,
            type=Event.Type.FAILED,
            data=delivery.failure_data(exc, attempt.error),
        )
        if _release(record, send):
            send.mark(Send.Status.FAILED)
        logger.warning("delivery of %s failed: %s", send.public_id, attempt.error)
        raise InternalError(
            "Email delivery failed; retry with the same idempotency key",
            extra={"sendId": send.public_id},
        ) from exc

    attempt.provider = result.provider
    attempt.provider_message_id = result.message_id
    body = {
        "sendId": send.public_id,
        "status": Send.Status.SENT.value,
        "messageId": result.message_id,
        "reused": False,
    }
    # The provider has answered: its bookkeeping is one commit instead of four (each autocommit
    # statement waits for its own WAL flush), and no lock is held while the provider is called.
    with transaction.atomic():
        attempt.save(force_insert=True)
        events.record(send=send, message=attempt, type=Event.Type.SENT)
        send.mark(Send.Status.SENT)
        if record is not None:
            idempotency.complete(record, send, body)
    return SendResult(body)
