"""Usage rows (read-only) and the operators' endpoint analytics page."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from accounts.models import Organization
from fluxomail.admin import ReadOnlyModelAdmin
from usage import analytics, charts
from usage.models import COUNTER_FIELDS, UsageCounter, UsageRejection

RANGES = {"24h": ("24 hours", 24), "7d": ("7 days", 7), "30d": ("30 days", 30)}


class BoundedDateChangeList(ChangeList):
    """Django's change list, with a date-hierarchy year past 9998 answered as a bad lookup.

    Django computes the end of the chosen year, month or day and overflows on the last ones
    (`?hour__year=9999` is a 500 there); the admin then shows its "invalid lookup" page instead.
    """

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


class ReadOnlyAdmin(ReadOnlyModelAdmin):
    list_select_related = ["organization", "api_key"]
    raw_id_fields = ["organization", "api_key"]

    def get_changelist(self, request, **kwargs):
        return BoundedDateChangeList


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = [
        "hour",
        "organization",
        "api_key",
        "endpoint",
        *COUNTER_FIELDS,
    ]
    list_filter = ["endpoint"]
    date_hierarchy = "hour"
    ordering = ["-hour"]

    def get_urls(self):
        view = self.admin_site.admin_view(self.analytics_view)
        return [path("analytics/", view, name="usage_analytics"), *super().get_urls()]

    def analytics_view(self, request: HttpRequest) -> HttpResponse:
        # admin_view has already sent anonymous and non-staff users to the admin's login.
        if not self.has_view_permission(request):
            raise PermissionDenied
        range_key = request.GET.get("range", "24h")
        if range_key not in RANGES:
            range_key = "24h"
        label, amount = RANGES[range_key]
        if range_key == "24h":
            window = analytics.Window.last_hours(amount)
        else:
            window = analytics.Window.last_days(amount)
        organization = None
        org_id = request.GET.get("organization", "")
        if org_id.isdigit():
            organization = Organization.objects.filter(pk=int(org_id)).first()
        qs = analytics.counters(window, organization)
        outcome = analytics.by_outcome(qs, window)
        per_endpoint = []
        for endpoint in analytics.ENDPOINTS:
            series = analytics.by_outcome(qs.filter(endpoint=endpoint), window)
            series.title = f"{endpoint}: requests by outcome"
            per_endpoint.append(series)
        # No chart of global_endpoint_sends alone: it is the "sent" bars of send-global's chart.
        chart_series = [outcome, *per_endpoint]
        context = {
            **self.admin_site.each_context(request),
            "title": "Endpoint analytics",
            "opts": self.model._meta,
            "ranges": [(key, value[0]) for key, value in RANGES.items()],
            "range_key": range_key,
            "range_label": label,
            "window": window,
            "organization": organization,
            "organizations": Organization.objects.order_by("name").only("pk", "name"),
            "endpoints": analytics.endpoint_totals(qs, analytics.rejections(window, organization)),
            "charts": [
                {"series": s, "svg": charts.render(s, height=300), "total": sum(s.totals.values())}
                for s in chart_series
            ],
            "top_orgs_volume": analytics.top_organizations(qs, "volume"),
            "top_orgs_errors": analytics.top_organizations(qs, "errors"),
            "top_keys_volume": analytics.top_keys(qs, "volume"),
            "top_keys_errors": analytics.top_keys(qs, "errors"),
        }
        return TemplateResponse(request, "admin/usage/analytics.html", context)


@admin.register(UsageRejection)
class UsageRejectionAdmin(ReadOnlyAdmin):
    list_display = ["hour", "organization", "key", "endpoint", "code", "count"]
    list_filter = ["endpoint", "code"]
    list_select_related = ["organization", "api_key"]
    date_hierarchy = "hour"
    ordering = ["-hour"]

    @admin.display(description="API key", ordering="api_key__name")
    def key(self, row: UsageRejection) -> str:
        # The key's name only: its prefix (random letters, of random width) made the list
        # wider than 1280 px with the sidebar open now and then; the key's page shows it.
        return row.api_key.name if row.api_key_id else "-"
