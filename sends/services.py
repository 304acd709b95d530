"""The send workflow once the request has been checked and its key claimed: store, render,
deliver, record.

Every statement runs in autocommit (no ATOMIC_REQUESTS): the provider is never called while a
transaction holds a lock, and the Send row exists (status pending) before rendering, because
tracking signs click URLs with the send's public id.
"""

import logging
from dataclasses import dataclass
from email.utils import formataddr
from typing import NoReturn

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Organization
from contacts import mail as contacts_mail
from contacts import services as contacts_services
from contacts.services import Screening
from fluxomail.addresses import addr_spec
from fluxomail.api import ApiError, DeliveryOutcomeUnknown, InternalError
from fluxomail.ids import new_id
from sends import delivery, events, idempotency, queue, sql
from sends.mime import Email, attachment_facts, attachment_type
from sends.models import Event, IdempotencyRecord, Message, Policy, Send
from sends.rendering import render_html

logger = logging.getLogger("fluxomail.sends")


@dataclass
class SendResult:
    body: dict


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
    content, html = data["content"], data.get("htmlContent")
    if policy is not None and policy.one_click_unsubscribe:
        links = contacts_mail.one_click(organization, data["to"], policy.category)
        headers.update(links.headers)
        content, html = links.text(content), html and links.html(html)
    message = Email(
        subject=data["subject"],
        body=content,
        from_email=_from_header(organization, data),
        to=[data["to"]],
        cc=data.get("cc") or None,
        bcc=data.get("bcc") or None,
        reply_to=[data["replyTo"]] if data.get("replyTo") else None,
        headers=headers,
    )
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
        content = attachment["contentBase64"]  # decoded by the serializer
        message.attach(
            attachment["filename"],
            content,
            # As recorded on the send (mime.attachment_facts).
            attachment_type(attachment["filename"], content, attachment.get("contentType")),
        )
    return message


def _create_send(**fields) -> Send:
    """new_send(**fields), inserted (on PostgreSQL by sends/sql.py, without the ORM's save)."""
    send = new_send(**fields)
    if sql.enabled():
        sql.insert_send(send)
    else:
        send.save(force_insert=True)
    return send


def _create_screened_send(*, recipients: dict, category: str, **fields) -> tuple[Send, Screening]:
    """new_send(**fields), inserted, and the Screening of its `recipients` (to, cc, bcc) for
    mail of `category`, on PostgreSQL: the check and the INSERT are one statement when no
    recipient is held back (nearly always); otherwise the send is inserted after it, naming the
    cc and bcc left out, as _create_send does after screen()."""
    send = new_send(**fields)
    query = contacts_services.screen_query(
        organization_id=send.organization_id, category=category, **recipients
    )
    screening = contacts_services.screened_rows(
        sql.insert_send_unless_held(send, query), **recipients
    )
    if send.pk is None:
        send.suppressed = list(screening.left_out)
        sql.insert_send(send)
    return send, screening


def new_send(
    *, organization, key, endpoint, data, request_id, idempotency_key, suppressed=()
) -> Send:
    """The unsaved Send of a request (status pending), its public id already given."""
    now = timezone.now()
    send = Send(
        public_id=new_id("sends"),
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
        attachments=attachment_facts(data.get("attachments", [])),
        suppressed=list(suppressed),
        created_at=now,
        updated_at=now,
    )
    return send


def _html_part(message: EmailMultiAlternatives) -> str:
    for content, mimetype in message.alternatives:
        if mimetype == "text/html":
            return content
    return ""


def _send_id(send: Send | None) -> dict:
    return {"sendId": send.public_id} if send is not None else {}


def attempt_row(send: Send, message: EmailMultiAlternatives) -> Message:
    """The (unsaved) Message row of one delivery attempt of `message`."""
    return Message(
        send=send,
        from_email=message.from_email,
        to=[addr_spec(recipient) for recipient in message.recipients()],
        provider="",
        feedback_id=message.extra_headers["Feedback-ID"],
        text=message.body,
        html=_html_part(message),
        # The headers as sent, Reply-To included (Django keeps it apart from extra_headers).
        headers={
            **message.extra_headers,
            **({"Reply-To": ", ".join(message.reply_to)} if message.reply_to else {}),
        },
    )


def _fail(
    error: InternalError,
    cause: Exception,
    *,
    record: IdempotencyRecord | None,
    send: Send | None,
    attempt: Message | None = None,
    uncertain: bool = False,
) -> NoReturn:
    """Records the failed attempt and raises `error`, which names the Send if one exists.

    The key becomes retryable, or, when delivery was uncertain, keeps this 500 as its answer.
    Recording is best effort: when the database is what failed, the client still gets `error`.
    """
    try:
        if attempt is not None:
            attempt.save(force_insert=True)
            events.record(
                send=send,
                message=attempt,
                type=Event.Type.FAILED,
                data=delivery.failure_data(cause, attempt.error),
            )
        if record is None:
            settled = True
        elif uncertain:
            settled = idempotency.complete(record, send, error.extra, status=500)
        else:
            settled = idempotency.fail(record, send)
        # A worker past the lock timeout must not mark the Send failed: the new owner of the
        # claim may already have delivered it.
        if settled and send is not None:
            send.mark(Send.Status.FAILED)
    except Exception as exc:
        logger.error("could not record the failure: %s", type(exc).__name__, exc_info=exc)
    raise error from cause


def send_email(
    *,
    org: Organization,
    key: ApiKey,
    endpoint: str,
    data: dict,
    request_id: str,
    policy: Policy | None = None,
    claim: idempotency.Claim | None = None,
) -> SendResult:
    """Sends validated `data` and returns the 200 body. Raises a 500 that names the sendId
    whenever a Send row exists, whatever failed: rendering, the provider or the database.

    With an idempotency key, `claim` holds it (idempotency.claim): a failed earlier attempt is
    retried on the same Send.
    """
    record = claim.record if claim is not None else None
    send = record.send if record is not None else None
    try:
        recipients = {"to": data["to"], "cc": data.get("cc", []), "bcc": data.get("bcc", [])}
        category = policy.category if policy is not None else ""
        queued = queue.mode(policy) == Policy.DeliveryMode.QUEUE
        # The new send's fields (new_send), named once for both ways of inserting it.
        fields = {
            "organization": org,
            "key": key,
            "endpoint": endpoint,
            "data": data,
            "request_id": request_id,
            "idempotency_key": record.key if record is not None else None,
        }
        if send is None and not queued and sql.enabled():
            # PostgreSQL: the suppression check and the new send's INSERT in one statement.
            send, screening = _create_screened_send(
                recipients=recipients, category=category, **fields
            )
        else:
            # The suppression list, for to, cc and bcc together: one query (contacts.services).
            screening = contacts_services.screen(
                organization_id=org.pk, category=category, **recipients
            )
        if screening.to_reason is None and queued:
            # Queue mode: the send and its job are stored, a worker delivers (sends/queue.py);
            # suppressed cc/bcc are already left out of what it will send.
            return queue.accept(
                org=org,
                key=key,
                endpoint=endpoint,
                data={**data, "cc": screening.cc, "bcc": screening.bcc},
                request_id=request_id,
                record=record,
                send=send,
                idempotency_key=record.key if record is not None else None,
            )
        if send is None:
            send = _create_send(**fields, suppressed=screening.left_out)
        if screening.to_reason is None:
            deliverable = {**data, "cc": screening.cc, "bcc": screening.bcc}
            message = _build_message(org, send, deliverable, policy)
    except ApiError:
        raise  # queue mode's answer for a claim taken over (409): not a failure of ours
    except Exception as exc:
        logger.error("send preparation failed: %s", type(exc).__name__, exc_info=exc)
        _fail(InternalError(extra=_send_id(send)), exc, record=record, send=send)
    if screening.to_reason is not None:
        return _drop(send, record, screening.to_reason)

    attempt = attempt_row(send, message)
    try:
        result = delivery.deliver(message)
    except Exception as exc:
        attempt.provider = delivery.provider_name(message.connection) if message.connection else ""
        attempt.error = delivery.safe_error(exc)
        logger.warning("delivery of %s failed: %s", send.public_id, attempt.error)
        # Uncertain: the provider may have the message. Neither this request nor a retry with
        # its key sends it again; the client decides, knowing that.
        uncertain = isinstance(exc, delivery.UncertainDelivery)
        error = (
            DeliveryOutcomeUnknown(extra=_send_id(send))
            if uncertain
            else InternalError(
                "Email delivery failed; retry with the same idempotency key",
                extra=_send_id(send),
            )
        )
        _fail(error, exc, record=record, send=send, attempt=attempt, uncertain=uncertain)

    attempt.provider = result.provider
    attempt.provider_message_id = result.message_id
    body = {
        "sendId": send.public_id,
        "status": Send.Status.SENT.value,
        "messageId": result.message_id,
        "reused": False,
    }
    # The provider has answered: its bookkeeping is one commit, and no lock is held while the
    # provider is called.
    try:
        _settle(send, Send.Status.SENT, Event.Type.SENT, record, body, attempt=attempt)
    except Exception as exc:
        # Delivered, but the database went away (a dropped connection): nothing could be
        # recorded, so say what the client must know, with the Send it can look up.
        logger.error(
            "could not record %s as sent: %s", send.public_id, type(exc).__name__, exc_info=exc
        )
        raise DeliveryOutcomeUnknown(extra=_send_id(send)) from exc
    return SendResult(body)


def _drop(send: Send, record: IdempotencyRecord | None, reason: str) -> SendResult:
    """The `to` is suppressed: nothing is delivered, an `email.dropped` event says why, and the
    answer (status `suppressed`) is what an idempotent replay returns too."""
    body = {
        "sendId": send.public_id,
        "status": Send.Status.SUPPRESSED.value,
        "messageId": None,
        "reused": False,
    }
    _settle(
        send,
        Send.Status.SUPPRESSED,
        Event.Type.DROPPED,
        record,
        body,
        data={"reason": "suppressed", "suppressionReason": reason},
    )
    return SendResult(body)


def _settle(
    send: Send,
    status: str,
    event_type: str,
    record: IdempotencyRecord | None,
    body: dict,
    *,
    attempt: Message | None = None,
    data: dict | None = None,
) -> None:
    """Records the outcome: the attempt (if any), its event, the send's status and the key's
    answer (under its lease), all committed together, then tells the event's listeners.

    On PostgreSQL one statement (sends/sql.py); elsewhere the same rows in one transaction
    (each autocommit statement would wait for its own WAL flush)."""
    if sql.enabled():
        event = events.build(send=send, message=attempt, type=event_type, data=data)
        if not sql.settle(
            send=send, status=status, event=event, attempt=attempt, record=record, body=body
        ):
            idempotency.lease_lost(record, "answer")
        events.announce(event)
        return
    with transaction.atomic():
        if attempt is not None:
            attempt.save(force_insert=True)
            attempt.save_provider_ids()
        events.record(send=send, message=attempt, type=event_type, data=data)
        send.mark(status)
        if record is not None:
            idempotency.complete(record, send, body)
