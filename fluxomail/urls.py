from django.contrib import admin
from django.urls import include, path, re_path

from fluxomail import api, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/", include("sends.urls")),
    path("api/v1/", include("webhooks.urls")),
    path("api/v1/", include("fluxomail.openapi")),
    path("t/", include("sends.tracking_urls")),
    path("admin/", admin.site.urls),
    path("", include("webhooks.dashboard_urls")),
    path("", include("usage.urls")),
    # Unknown API and tracking paths answer in the API's error shape, DEBUG or not.
    re_path(r"^(api|t)/", api.not_found),
]

handler400 = api.handler400
handler404 = api.handler404
handler500 = api.handler500
