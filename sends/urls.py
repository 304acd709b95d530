from django.urls import path

from sends import views

urlpatterns = [
    path("emails/send", views.SendEmailView.as_view(endpoint="send"), name="emails-send"),
    path(
        "emails/send-global",
        views.SendEmailView.as_view(endpoint="send-global"),
        name="emails-send-global",
    ),
]
