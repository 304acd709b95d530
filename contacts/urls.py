from django.urls import path

from contacts import views

urlpatterns = [
    path("api/unsubscribe", views.unsubscribe, name="unsubscribe"),
    path("preferences", views.preferences, name="preferences"),
]
