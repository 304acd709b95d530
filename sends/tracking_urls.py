from django.urls import path

from sends import tracking_views

urlpatterns = [
    path("o/<str:token>.gif", tracking_views.open_pixel, name="tracking-open"),
    path("c/<str:token>", tracking_views.click, name="tracking-click"),
]
