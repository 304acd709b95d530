from django.urls import path

from contacts import api

urlpatterns = [
    path("preferences", api.PreferencesView.as_view(), name="preferences-api"),
    path("contacts/sync", api.ContactsSyncView.as_view(), name="contacts-sync"),
]
