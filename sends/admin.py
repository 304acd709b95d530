"""Sends and idempotency records for operators: read-only, fast on millions of rows."""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.timesince import timesince

from fluxomail.admin import ReadOnlyModelAdmin
from sends.events import envelope, sentence
from sends.models import Event, IdempotencyRecord, Message, Policy, Send


class _ReadOnlyRows:
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(_ReadOnlyRows, admin.TabularInline):
    pass


class ReadOnlyStackedInline(_ReadOnlyRows, admin.StackedInline):
    """For rows with long values (message ids, addresses, errors): each field on its own line
    with its label, inside the page's width."""


def addresses(values: list) -> str:
    """A JSON list of addresses, as people write them."""
    return ", ".join(values) or "-"


class MessageInline(ReadOnlyStackedInline):
    model = Message
    verbose_name = "delivery attempt"
    fields = [
        "created_at",
        "provider",
        "provider_message_id",
        "from_email",
        "recipients",
        "error",
        "body_purged_at",
    ]
    readonly_fields = fields

    @admin.display(description="envelope recipients")
    def recipients(self, message: Message) -> str:
        return addresses(message.to)


class EventInline(ReadOnlyInline):
    model = Event
    fields = ["occurred_at", "public_id", "type", "description", "data"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("send", "message")

    @admin.display(description="what happened")
    def description(self, event: Event) -> str:
        return sentence(envelope(event))


class PolicyKeyFilter(admin.SimpleListFilter):
    """Policy keys read from the small policies table, not by DISTINCT over every send."""

    title = "policy"
    parameter_name = "policy_key"

    def lookups(self, request, model_admin):
        keys = Policy.objects.order_by("key").values_list("key", flat=True).distinct()
        return [(key, key) for key in keys]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(policy_key=self.value())
        return queryset


@admin.register(Send)
class SendAdmin(ReadOnlyModelAdmin):
    list_display = [
        "public_id",
        "created_at",
        "organization",
        "to",
        "subject",
        "status",
    ]
    # Endpoint and policy are filters, not columns: the list fits 1280 px with the sidebar open.
    list_filter = ["status", "endpoint", PolicyKeyFilter, "organization"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization", "api_key"]
    # Exact matches only ("="): each one is an index lookup, never a LIKE scan of the table.
    search_fields = ["=public_id", "=messages__provider_message_id", "=to", "=request_id"]
    search_help_text = "Exact send id, provider message id, recipient or request id."
    ordering = ["-public_id"]
    inlines = [MessageInline, EventInline]
    fields = [
        "public_id", "organization", "api_key", "endpoint", "to", "cc_addresses", "bcc_addresses",
        "subject", "policy_key", "status", "request_id", "idempotency_key", "metadata_pairs",
        "attachment_list", "suppressed_addresses", "created_at", "updated_at", "first_opened_at",
        "first_clicked_at",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="cc")
    def cc_addresses(self, send: Send) -> str:
        return addresses(send.cc)

    @admin.display(description="bcc")
    def bcc_addresses(self, send: Send) -> str:
        return addresses(send.bcc)

    @admin.display(description="metadata")
    def metadata_pairs(self, send: Send) -> str:
        return (
            format_html_join("\n", "<div><code>{}</code>: {}</div>", sorted(send.metadata.items()))
            or "-"
        )

    @admin.display(description="attachments")
    def attachment_list(self, send: Send) -> str:
        if send.attachments is None:
            return "not recorded (sent before attachments were recorded)"
        return (
            format_html_join(
                "\n",
                "<div>{} · {} · {}</div>",
                (
                    (item["filename"], item["contentType"], filesizeformat(item["size"]))
                    for item in send.attachments
                ),
            )
            or "-"
        )

    @admin.display(description="suppressed (left out of cc/bcc)")
    def suppressed_addresses(self, send: Send) -> str:
        return addresses(send.suppressed)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyModelAdmin):
    list_display = ["key", "organization", "endpoint", "state", "age", "expires_at", "expired"]
    list_filter = ["state", "endpoint"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization", "send"]
    search_fields = ["=key"]
    ordering = ["-created_at"]

    @admin.display(description="Age")
    def age(self, obj: IdempotencyRecord) -> str:
        return timesince(obj.created_at)

    @admin.display(boolean=True, description="Expired")
    def expired(self, obj: IdempotencyRecord) -> bool:
        return obj.expires_at <= timezone.now()


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = [
        "key",
        "organization",
        "category",
        "one_click_unsubscribe",
        "track_opens",
        "track_clicks",
        "created_at",
    ]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    search_fields = ["key", "organization__name"]
