"""Strict JSON fields for the contacts API: DRF's would turn 5 into "5" and "yes" into true."""

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string (null too, when allow_null)."""

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false."""

    def to_internal_value(self, data) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


def refuse_unknown(serializer: serializers.Serializer, data) -> None:
    """Names every field of `data` that `serializer` does not have, as a 400 would."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(serializer.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
