from django import forms

from sends.events import ALL_TYPES, WILDCARD
from webhooks import targets

TYPE_CHOICES = [(WILDCARD, "Every event (email.*)"), *((t, t) for t in ALL_TYPES)]


class EndpointCreateForm(forms.Form):
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        initial=[WILDCARD],
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            targets.check_new_url(url)
        except targets.UnsafeTarget as exc:
            raise forms.ValidationError(str(exc)) from None
        return url
