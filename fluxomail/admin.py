"""The operators' admin site: Django's, with the login throttled like the owners' login page."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

from fluxomail.login_throttle import login_throttled


class FluxomailAdminSite(admin.AdminSite):
    def login(self, request, extra_context=None):
        if request.method == "POST" and login_throttled(request):
            # Answer as to a GET (an unbound form) without checking the password: that is what
            # the throttle is there to stop.
            request.method = "GET"
            response = super().login(request, {**(extra_context or {}), "throttled": True})
            response.status_code = 429
            return response
        return super().login(request, extra_context)


class FluxomailAdminConfig(AdminConfig):
    default_site = "fluxomail.admin.FluxomailAdminSite"
