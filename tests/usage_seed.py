"""A seeded usage history shared by the dashboard, admin and browser tests."""

from datetime import UTC, datetime

from usage.models import UsageCounter, UsageRejection

# Frozen "now" for the tests: 2026-03-15 12:30 UTC.
NOW = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)


def hour(day: int, h: int, month: int = 3) -> datetime:
    return datetime(2026, month, day, h, tzinfo=UTC)


def counter(organization, api_key, endpoint, at, **counts) -> UsageCounter:
    return UsageCounter.objects.create(
        organization=organization, api_key=api_key, endpoint=endpoint, hour=at, **counts
    )


def seed_history(organization, key_a, key_b) -> None:
    """Two keys, both endpoints, several days and hours; one row outside the 30-day range."""
    counter(
        organization,
        key_a,
        "send",
        hour(15, 9),
        requests=12,
        sends=7,
        replays=2,
        rejected=2,
        rate_limited=1,
        latency_ms_total=1200,
    )
    counter(organization, key_a, "send", hour(15, 11), requests=5, sends=5, latency_ms_total=400)
    counter(
        organization,
        key_b,
        "send-global",
        hour(15, 10),
        requests=4,
        sends=3,
        failures=1,
        global_endpoint_sends=3,
        latency_ms_total=800,
    )
    counter(
        organization,
        key_a,
        "send",
        hour(14, 23),
        requests=6,
        sends=4,
        rejected=1,
        failures=1,
        latency_ms_total=300,
    )
    counter(
        organization,
        key_b,
        "send-global",
        hour(10, 8),
        requests=9,
        sends=9,
        global_endpoint_sends=9,
        latency_ms_total=900,
    )
    counter(organization, key_b, "send", hour(1, 0), requests=2, sends=2)
    # Outside the last 30 days (2026-02-14 ... 2026-03-15) but inside 90.
    counter(organization, key_a, "send", hour(1, 5, month=2), requests=50, sends=50)
    UsageRejection.objects.create(
        organization=organization,
        api_key=key_a,
        endpoint="send",
        hour=hour(15, 9),
        code="validation_error",
        count=2,
    )
    UsageRejection.objects.create(
        organization=organization,
        api_key=key_a,
        endpoint="send",
        hour=hour(14, 23),
        code="missing_scope",
        count=1,
    )
