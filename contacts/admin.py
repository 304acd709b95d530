"""Operators' pages for recipients: categories, contacts, and the suppression list.

Suppressions are added through a form that asks why and removed through an action that asks
why: both go through contacts.services, so every change is logged with the operator's name.
They are never edited in place and never deleted without a reason.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from contacts import services
from contacts.models import Category, Contact, Subscription, Suppression, SuppressionChange
from fluxomail.addresses import normalize
from fluxomail.admin import ReadOnlyModelAdmin
from fluxomail.paginator import CappedCountPaginator


def _operator(request) -> str:
    return f"operator {request.user.get_username()}"


class _NormalisedSearch:
    """Exact searches by address, typed as a person would (capitals, a Unicode domain)."""

    def get_search_results(self, request, queryset, search_term):
        try:
            search_term = normalize(search_term) if "@" in search_term else search_term
        except ValueError:
            pass
        return super().get_search_results(request, queryset, search_term)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "organization", "created_at"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    search_fields = ["=key", "organization__name"]


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    can_delete = False
    fields = ["category", "subscribed", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(_NormalisedSearch, admin.ModelAdmin):
    list_display = ["email", "organization", "subscribed", "plan", "state", "source", "updated_at"]
    list_filter = ["subscribed", "organization"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    search_fields = ["=email", "=public_id", "=external_id"]
    search_help_text = "Exact address, contact id or external id."
    ordering = ["-public_id"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    inlines = [SubscriptionInline]
    # The recipient's choices change through their preferences, the API or a sync, which keep
    # the suppression list in step; an operator suppresses or lifts on the suppression list.
    readonly_fields = ["public_id", "email", "subscribed", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False


class SuppressionAddForm(forms.ModelForm):
    note = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 2}), help_text="Why (logged)."
    )

    class Meta:
        model = Suppression
        fields = ["organization", "address", "category", "reason", "note"]

    def clean_address(self) -> str:
        try:
            return normalize(self.cleaned_data["address"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class RemoveForm(forms.Form):
    note = forms.CharField(
        label="Why", max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


@admin.register(Suppression)
class SuppressionAdmin(_NormalisedSearch, admin.ModelAdmin):
    list_display = [
        "address",
        "organization",
        "scope",
        "reason",
        "source_event",
        "actor",
        "note",
        "created_at",
    ]
    list_filter = ["reason", "organization"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    search_fields = ["=address", "=source_event"]
    search_help_text = "Exact address or event id (evt_…)."
    ordering = ["-created_at", "-id"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    form = SuppressionAddForm
    actions = ["remove_with_reason"]

    @admin.display(description="scope")
    def scope(self, obj: Suppression) -> str:
        return obj.scope_label

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Removal asks for a reason: the "remove with a reason" action, never a bare delete.
        return False

    def save_model(self, request, obj, form, change) -> None:
        added = services.suppress(
            organization_id=obj.organization_id,
            address=obj.address,
            reason=obj.reason,
            category=obj.category,
            actor=_operator(request),
            note=form.cleaned_data["note"],
            user=request.user,
        )
        if added is None:
            messages.warning(request, "The address already had this suppression.")
            added = Suppression.objects.get(
                organization_id=obj.organization_id,
                address=obj.address,
                category=obj.category,
                reason=obj.reason,
            )
        obj.pk = added.pk

    def log_addition(self, request, obj, message):
        return None  # SuppressionChange is this model's log

    @admin.action(description="Remove selected suppressions (asks why)")
    def remove_with_reason(self, request, queryset):
        form = RemoveForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            removed = sum(
                services.lift(
                    suppression,
                    actor=_operator(request),
                    note=form.cleaned_data["note"],
                    user=request.user,
                )
                for suppression in queryset
            )
            self.message_user(request, f"Removed {removed} suppression(s).")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Remove suppressions",
            "suppressions": queryset,
            "form": form,
            "opts": self.model._meta,
            "action": "remove_with_reason",
        }
        return TemplateResponse(request, "admin/contacts/suppression/remove.html", context)


@admin.register(SuppressionChange)
class SuppressionChangeAdmin(_NormalisedSearch, ReadOnlyModelAdmin):
    list_display = [
        "created_at",
        "action",
        "address",
        "organization",
        "category",
        "reason",
        "actor",
        "note",
        "source_event",
    ]
    list_filter = ["action", "reason", "organization"]
    list_select_related = ["organization"]
    search_fields = ["=address"]
    ordering = ["-created_at", "-id"]
