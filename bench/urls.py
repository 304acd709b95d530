from django.urls import path

from bench.views import BaselineView, DrfReferenceView
from fluxomail import urls

urlpatterns = [
    path("bench/baseline", BaselineView.as_view(), name="bench-baseline"),
    path("bench/drf", DrfReferenceView.as_view(), name="bench-drf"),
    *urls.urlpatterns,
]

handler400 = urls.handler400
handler404 = urls.handler404
handler500 = urls.handler500
