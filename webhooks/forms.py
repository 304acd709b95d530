from django import forms

from sends.events import ALL_TYPES, WILDCARD
from webhooks import targets

TYPE_CHOICES = [(WILDCARD, "Every event (email.*)"), *((t, t) for t in ALL_TYPES)]


class EndpointUrlField(forms.URLField):
    """An endpoint's URL, checked as the API checks it (webhooks.targets, the SSRF guard)."""

    def __init__(self, **kwargs):
        super().__init__(label="URL", max_length=2000, assume_scheme="https", **kwargs)

    def validate(self, value) -> None:
        super().validate(value)
        try:
            targets.check_new_url(value)
        except targets.UnsafeTarget as exc:
            raise forms.ValidationError(str(exc)) from None


class EndpointCreateForm(forms.Form):
    url = EndpointUrlField()
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        initial=[WILDCARD],
    )
