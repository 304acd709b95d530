from django.contrib import admin
from django.urls import include, path, re_path

from fluxomail import api, prometheus, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("docs/errors/", views.error_docs, name="error-docs"),
    path("docs/errors/<str:code>", views.error_docs, name="error-doc"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", prometheus.metrics_view, name="prometheus-metrics"),
    path("api/v1/", include("sends.urls")),
    path("api/v1/", include("contacts.api_urls")),
    path("api/v1/", include("webhooks.urls")),
    path("api/v1/", include("fluxomail.openapi")),
    path("t/", include("sends.tracking_urls")),
    path("webhooks/anymail/", include("sends.provider_webhooks")),
    path("", include("contacts.urls")),
    path("admin/", admin.site.urls),
    path("", include("webhooks.dashboard_urls")),
    path("", include("usage.urls")),
    # Unknown API, tracking and webhook paths answer in the API's error shape, DEBUG or not.
    re_path(r"^(api|t|webhooks)/", api.not_found),
]

handler400 = api.handler400
handler404 = api.handler404
handler500 = api.handler500
