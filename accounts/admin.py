from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import ApiKey, Membership, Organization, Scope
from fluxomail import hotcache


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "paused", "from_email", "created_at", "usage_link"]
    list_filter = ["paused"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    actions = ["pause", "resume"]

    @admin.display(description="Usage")
    def usage_link(self, obj: Organization) -> str:
        url = reverse("admin:usage_analytics")
        return format_html('<a href="{}?organization={}&amp;range=7d">Analytics</a>', url, obj.pk)

    @admin.action(description="Pause selected organizations")
    def pause(self, request, queryset):
        count = queryset.update(paused=True)
        hotcache.clear_all()
        self.message_user(request, f"Paused {count} organization(s).")

    @admin.action(description="Resume selected organizations")
    def resume(self, request, queryset):
        count = queryset.update(paused=False)
        hotcache.clear_all()
        self.message_user(request, f"Resumed {count} organization(s).")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "organization"]
    raw_id_fields = ["user", "organization"]
    search_fields = ["user__username", "organization__name"]


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="No scope at all: the key may send mail and nothing else.",
    )

    class Meta:
        model = ApiKey
        fields = ["organization", "name", "scopes", "rate_limit_per_minute", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    # Fits 1280 px with the sidebar open: scopes as words, the cap's heading short, and the
    # creation time on the key's page (the list is ordered by it).
    list_display = [
        "name",
        "prefix",
        "organization",
        "scope_list",
        "cap",
        "status",
        "last_used_at",
    ]
    list_filter = ["revoked_at", "organization"]
    list_select_related = ["organization"]
    search_fields = ["name", "public_id", "organization__name"]
    raw_id_fields = ["organization", "created_by"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes) or "none (may send mail only)"

    @admin.display(description="cap/min", ordering="rate_limit_per_minute")
    def cap(self, key: ApiKey) -> str:
        return str(key.rate_limit_per_minute) if key.rate_limit_per_minute else "-"

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "organization"]
        return ["created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        # Kept on the instance for response_add only: never in a message, the session or a log.
        obj.new_token = obj.issue_token()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        """Shows the new key once, in the answer to the POST itself (no redirect, no storage)."""
        token = getattr(obj, "new_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "key": obj, "token": token}
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        hotcache.clear_all()
        self.message_user(request, f"Revoked {count} key(s).")
