from django.contrib.admin.apps import AdminConfig


class FluxomailAdminConfig(AdminConfig):
    """django.contrib.admin with Fluxomail's admin site (fluxomail/admin.py) as admin.site."""

    default_site = "fluxomail.admin.FluxomailAdminSite"
