"""Signals other apps listen to, so that sends never imports them."""

from django.dispatch import Signal

# Sent with `event` once the transaction that recorded it commits (at once in autocommit):
# receivers never see an event that may still be rolled back. Outbound webhooks listen.
event_recorded = Signal()
