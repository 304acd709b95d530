"""Webhook jobs: fan-out, one attempt, the sweeper and the log purge (see delivery.py)."""

from celery import shared_task

from sends.models import Event
from webhooks import delivery


@shared_task(name="webhooks.fan_out")
def fan_out(event_pk: int) -> int:
    event = Event.objects.select_related("send", "message").filter(pk=event_pk).first()
    return len(delivery.fan_out(event)) if event is not None else 0


@shared_task(name="webhooks.deliver")
def deliver(delivery_pk: int) -> None:
    delivery.attempt(delivery_pk)


@shared_task(name="webhooks.sweep")
def sweep() -> int:
    return delivery.sweep()


@shared_task(name="webhooks.purge")
def purge() -> int:
    return delivery.purge()
