from django.urls import path

from usage import recipients, views

urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("dashboard/", views.home, name="dashboard"),
    path("dashboard/organization", views.pick_organization, name="dashboard-organization"),
    path("dashboard/usage/", views.usage, name="dashboard-usage"),
    path("dashboard/usage.csv", views.usage_csv, name="dashboard-usage-csv"),
    path("dashboard/keys/", views.keys, name="dashboard-keys"),
    path("dashboard/keys/<str:public_id>/revoke", views.revoke_key, name="dashboard-key-revoke"),
    path("dashboard/sends/", views.sends, name="dashboard-sends"),
    path("dashboard/sends/<str:public_id>/", views.send_detail, name="dashboard-send"),
    path(
        "dashboard/sends/<str:public_id>/preview",
        views.send_preview,
        name="dashboard-send-preview",
    ),
    path("dashboard/suppressions/", recipients.suppressions, name="dashboard-suppressions"),
    path(
        "dashboard/suppressions/remove",
        recipients.remove_suppression,
        name="dashboard-suppression-remove",
    ),
    path(
        "dashboard/suppressions.csv", recipients.suppressions_csv, name="dashboard-suppressions-csv"
    ),
    path("dashboard/contacts/", recipients.contacts, name="dashboard-contacts"),
    path(
        "dashboard/contacts/<str:public_id>/",
        recipients.contact_detail,
        name="dashboard-contact",
    ),
]
