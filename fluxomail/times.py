"""Moments on the wire: ISO 8601 in UTC with milliseconds out, ISO 8601 or epoch ms in."""

from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, to the millisecond."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_moment(value: str) -> datetime | None:
    """An ISO 8601 date-time (no offset: UTC) or epoch milliseconds, as an aware UTC datetime;
    None when it is neither or out of range."""
    if value.isascii() and value.isdigit():
        if len(value) > 15:  # past the year 33000: not a moment of this service
            return None
        try:
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            return None
    try:
        moment = parse_datetime(value)
    except (ValueError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
