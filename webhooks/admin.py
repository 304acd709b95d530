"""Webhook endpoints and their deliveries for operators.

Endpoints are created by their organization (API or dashboard), where the secret is shown once;
here operators switch them on or off and change their URL (the SSRF guard applies) or types.
Deliveries are read-only, with their attempt log, and can be redelivered.
"""

from django import forms
from django.contrib import admin, messages

from fluxomail.admin import ReadOnlyModelAdmin
from sends.admin import ReadOnlyInline
from webhooks import delivery
from webhooks.forms import EndpointUrlField
from webhooks.models import Attempt, Delivery, Endpoint


class EndpointForm(forms.ModelForm):
    url = EndpointUrlField()

    class Meta:
        model = Endpoint
        fields = ["url", "event_types", "enabled", "disabled_reason"]


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["public_id", "organization", "url", "enabled", "consecutive_failures"]
    list_filter = ["enabled"]
    list_select_related = ["organization"]
    search_fields = ["=public_id", "url"]
    readonly_fields = ["public_id", "organization", "consecutive_failures", "created_at"]
    ordering = ["-public_id"]

    def has_add_permission(self, request) -> bool:
        return False


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = ["number", "created_at", "status_code", "latency_ms", "error", "response_body"]
    readonly_fields = fields


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyModelAdmin):
    list_display = [
        "public_id",
        "created_at",
        "endpoint",
        "event_type",
        "message_id",
        "status",
        "attempts",
        "next_attempt_at",
    ]
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint"]
    raw_id_fields = ["endpoint", "event"]
    search_fields = ["=public_id", "=message_id", "=endpoint__public_id"]
    search_help_text = "Exact delivery id, event id or endpoint id."
    ordering = ["-public_id"]
    inlines = [AttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request, queryset) -> None:
        count = 0
        for item in queryset:
            delivery.redeliver(item)
            count += 1
        messages.success(request, f"{count} delivery(ies) queued again.")
