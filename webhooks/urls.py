from django.urls import path

from webhooks import api

urlpatterns = [
    path("webhook-endpoints", api.EndpointListView.as_view(), name="webhook-endpoints"),
    path(
        "webhook-endpoints/<str:endpoint_id>",
        api.EndpointDetailView.as_view(),
        name="webhook-endpoint",
    ),
    path(
        "webhook-endpoints/<str:endpoint_id>/test",
        api.EndpointTestView.as_view(),
        name="webhook-endpoint-test",
    ),
]
