from django import forms

from accounts.models import Scope


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=[Scope.SEND_EMAIL],
        help_text="No scope at all: the key may send mail and nothing else.",
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
    STATUS_CHOICES = [
        ("", "Any status"),
        ("pending", "Pending"),
        ("queued", "Queued"),
        ("sent", "Sent"),
        ("failed", "Failed"),
    ]
    ENDPOINT_CHOICES = [("", "Any endpoint"), ("send", "send"), ("send-global", "send-global")]

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    endpoint = forms.ChoiceField(choices=ENDPOINT_CHOICES, required=False)
    to = forms.CharField(required=False, max_length=500, label="Recipient")
    before = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)
