"""The operators' admin site: Django's, with the login throttled like the owners' login page.

Imported lazily through FluxomailAdminConfig.default_site, once the models are loaded.
"""

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from fluxomail.login_throttle import login_refusal
from fluxomail.paginator import CappedCountPaginator


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Rows written by the service itself: operators look, never edit (nor count every row)."""

    paginator = CappedCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    def clean(self):
        # Refused before authenticate(): checking the password is what the throttle stops.
        refusal = getattr(self.request, "login_refusal", None)
        if refusal is not None:
            raise ValidationError(refusal.message, code="throttled")
        return super().clean()


class FluxomailAdminSite(admin.AdminSite):
    login_form = ThrottledAdminAuthenticationForm
    site_header = "Fluxomail administration"
    site_title = "Fluxomail admin"
    index_title = "Operations"

    def login(self, request, extra_context=None):
        request.login_refusal = login_refusal(request) if request.method == "POST" else None
        response = super().login(request, extra_context)
        if request.login_refusal is not None:
            response.status_code = request.login_refusal.status
        return response
