from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import Scope, validate_key_name
from fluxomail.addresses import normalize
from sends.models import Send


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[validate_key_name])
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=[Scope.SEND_EMAIL],
        help_text=(
            'Tick what the key may do; "Send email" is ticked for you. A key with no box ticked '
            "may send email and nothing else."
        ),
    )
    rate_limit_per_minute = forms.IntegerField(
        label="Requests per minute",
        required=False,
        min_value=1,
        max_value=1_000_000,
        help_text="Empty: no per-key cap.",
    )


class OrganizationPickForm(forms.Form):
    organization = forms.SlugField()


class SendFilterForm(forms.Form):
    STATUS_CHOICES = [("", "Any status"), *Send.Status.choices]
    ENDPOINT_CHOICES = [("", "Any endpoint"), ("send", "send"), ("send-global", "send-global")]

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    endpoint = forms.ChoiceField(choices=ENDPOINT_CHOICES, required=False)
    to = forms.CharField(
        required=False,
        max_length=500,
        label="Recipient",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Exact recipient"}),
    )
    before = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)


class SuppressionAddForm(forms.Form):
    address = forms.CharField(max_length=320)
    category = forms.ChoiceField(label="Scope", required=False)
    note = forms.CharField(label="Why", max_length=500)

    def __init__(self, *args, categories=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = [("", "All mail")] + [
            (c.key, f"Category: {c.name}") for c in categories
        ]

    def clean_address(self) -> str:
        try:
            address = normalize(self.cleaned_data["address"])
            validate_email(address)
        except (ValueError, ValidationError):
            raise forms.ValidationError("Enter a valid email address.") from None
        return address


class SuppressionRemoveForm(forms.Form):
    address = forms.CharField(max_length=320, widget=forms.HiddenInput)
    category = forms.CharField(max_length=50, required=False, widget=forms.HiddenInput)
    reason = forms.CharField(max_length=20, widget=forms.HiddenInput)
    note = forms.CharField(label="Why", max_length=500)


class AddressSearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=320,
        label="Address",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Find an address"}),
    )
    before = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)

    def clean_q(self) -> str:
        value = self.cleaned_data["q"].strip()
        try:
            return normalize(value) if value else ""
        except ValueError:
            return value.lower()
