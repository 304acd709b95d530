from django.urls import path

from accounts import token_api
from sends import event_api, stream, timeline, views

urlpatterns = [
    path("emails/send", views.SendEmailView.as_view(endpoint="send"), name="emails-send"),
    path(
        "emails/send-global",
        views.SendEmailView.as_view(endpoint="send-global"),
        name="emails-send-global",
    ),
    path("events", event_api.EventListView.as_view(), name="events-list"),
    path("events/stream", stream.EventStreamView.as_view(), name="events-stream"),
    path("metrics", event_api.MetricsView.as_view(), name="metrics"),
    path("sends", timeline.SendListView.as_view(), name="sends-list"),
    path("sends/<str:send_id>", timeline.SendDetailView.as_view(), name="sends-detail"),
    # Short-lived tokens belong to accounts; every API path is routed here.
    path("tokens", token_api.TokenView.as_view(), name="tokens"),
]
