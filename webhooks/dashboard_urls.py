from django.urls import path

from webhooks import views

urlpatterns = [
    path("dashboard/webhooks/", views.endpoints, name="dashboard-webhooks"),
    path("dashboard/webhooks/<str:public_id>/", views.endpoint_detail, name="dashboard-webhook"),
    path(
        "dashboard/webhooks/<str:public_id>/<slug:action>",
        views.endpoint_action,
        name="dashboard-webhook-action",
    ),
    path(
        "dashboard/webhooks/<str:public_id>/deliveries/<str:delivery_id>/redeliver",
        views.redeliver,
        name="dashboard-webhook-redeliver",
    ),
]
