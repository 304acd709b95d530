"""The usage queries behind the owners' dashboard and the operators' analytics page.

Everything reads the hourly UsageCounter/UsageRejection buckets (never the sends table), adds
them up in the database and returns plain data: charts, tables and CSV exports are all drawn from
the same `Series`, so that the numbers on a chart, under it and in its export cannot disagree.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import F, FloatField, QuerySet, Sum
from django.db.models.functions import Cast, TruncDay
from django.utils import timezone

from accounts.models import ApiKey, Organization
from usage.models import COUNTER_FIELDS, UsageCounter, UsageRejection

# The outcomes of a request as the charts name them, with the counter column that holds each.
OUTCOMES: list[tuple[str, str]] = [
    ("sent", "sends"),
    ("suppressed", "suppressed"),
    ("replayed", "replays"),
    ("rejected", "rejected"),
    ("rate-limited", "rate_limited"),
    ("failed", "failures"),
]
ENDPOINTS = ["send", "send-global"]
ERROR_FIELDS = ["rejected", "rate_limited", "failures"]


@dataclass(frozen=True)
class Window:
    """A time range cut into hourly or daily buckets, [start, end), in UTC."""

    start: datetime
    end: datetime
    unit: str  # "hour" or "day"

    @classmethod
    def last_hours(cls, hours: int, now: datetime | None = None) -> "Window":
        now = (now or timezone.now()).astimezone(UTC)
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return cls(end - timedelta(hours=hours), end, "hour")

    @classmethod
    def last_days(cls, days: int, now: datetime | None = None) -> "Window":
        now = (now or timezone.now()).astimezone(UTC)
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return cls(end - timedelta(days=days), end, "day")

    @classmethod
    def this_month(cls, now: datetime | None = None) -> "Window":
        now = (now or timezone.now()).astimezone(UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        return cls(start, end, "day")

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self.unit == "hour" else timedelta(days=1)

    @property
    def buckets(self) -> list[datetime]:
        out, current = [], self.start
        while current < self.end:
            out.append(current)
            current += self.step
        return out

    def label(self, bucket: datetime) -> str:
        return bucket.strftime("%Y-%m-%d %H:00" if self.unit == "hour" else "%Y-%m-%d")


@dataclass
class Series:
    """Named rows of numbers over a window's buckets: one chart, one table, one CSV."""

    title: str
    window: Window
    rows: dict[str, list[int]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [self.window.label(b) for b in self.window.buckets]

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(values) for name, values in self.rows.items()}

    def table(self) -> list[list]:
        """One line per bucket: its label, then each row's value (the CSV's body too)."""
        names = list(self.rows)
        return [
            [label, *(self.rows[name][i] for name in names)] for i, label in enumerate(self.labels)
        ]


def counters(window: Window, organization: Organization | None = None) -> QuerySet:
    qs = UsageCounter.objects.filter(hour__gte=window.start, hour__lt=window.end)
    if organization is not None:
        qs = qs.filter(organization=organization)
    return qs


def rejections(window: Window, organization: Organization | None = None) -> QuerySet:
    qs = UsageRejection.objects.filter(hour__gte=window.start, hour__lt=window.end)
    if organization is not None:
        qs = qs.filter(organization=organization)
    return qs


def _bucketed(qs: QuerySet, window: Window, group: str | None, columns: Iterable[str]):
    """Sums of `columns` per (bucket, group) — one GROUP BY query."""
    bucket = F("hour") if window.unit == "hour" else TruncDay("hour", tzinfo=UTC)
    keys = ["bucket"] + ([group] if group else [])
    return (
        qs.annotate(bucket=bucket)
        .values(*keys)
        .order_by()
        .annotate(**{f"sum_{c}": Sum(c) for c in columns})
    )


def _index(window: Window) -> dict[datetime, int]:
    return {b: i for i, b in enumerate(window.buckets)}


def _position(index: dict[datetime, int], bucket) -> int | None:
    # SQLite hands back naive datetimes for truncated values; the buckets are UTC.
    if timezone.is_naive(bucket):
        bucket = bucket.replace(tzinfo=UTC)
    return index.get(bucket.astimezone(UTC))


def by_outcome(qs: QuerySet, window: Window) -> Series:
    series = Series(
        "Requests by outcome", window, {name: [0] * len(window.buckets) for name, _ in OUTCOMES}
    )
    index = _index(window)
    for row in _bucketed(qs, window, None, [column for _, column in OUTCOMES]):
        i = _position(index, row["bucket"])
        if i is None:
            continue
        for name, column in OUTCOMES:
            series.rows[name][i] += row[f"sum_{column}"] or 0
    return series


def by_endpoint(qs: QuerySet, window: Window, column: str = "sends") -> Series:
    series = Series("Sends by endpoint", window, {e: [0] * len(window.buckets) for e in ENDPOINTS})
    index = _index(window)
    for row in _bucketed(qs, window, "endpoint", [column]):
        i = _position(index, row["bucket"])
        if i is None:
            continue
        values = series.rows.setdefault(row["endpoint"], [0] * len(window.buckets))
        values[i] += row[f"sum_{column}"] or 0
    return series


def by_key(qs: QuerySet, window: Window, column: str = "sends") -> Series:
    """Sends per API key; keys without traffic in the window are left out."""
    index = _index(window)
    per_key: dict[int, list[int]] = {}
    for row in _bucketed(qs, window, "api_key_id", [column]):
        i = _position(index, row["bucket"])
        if i is None:
            continue
        values = per_key.setdefault(row["api_key_id"], [0] * len(window.buckets))
        values[i] += row[f"sum_{column}"] or 0
    keys = ApiKey.objects.in_bulk(list(per_key))
    series = Series("Sends by API key", window)
    for key_id in sorted(per_key, key=lambda k: -sum(per_key[k])):
        key = keys.get(key_id)
        series.rows[f"{key.name} ({key.prefix})" if key else f"key {key_id}"] = per_key[key_id]
    return series


def totals(qs: QuerySet) -> dict[str, int]:
    """The counters added up over a queryset, with zeros rather than None."""
    sums = qs.aggregate(**{c: Sum(c) for c in COUNTER_FIELDS})
    return {c: sums[c] or 0 for c in COUNTER_FIELDS}


def endpoint_totals(qs: QuerySet, rejection_qs: QuerySet) -> list[dict]:
    """Per endpoint: every counter, average latency in ms, and rejections by error code."""
    codes: dict[str, dict[str, int]] = {}
    for row in rejection_qs.values("endpoint", "code").order_by().annotate(total=Sum("count")):
        codes.setdefault(row["endpoint"], {})[row["code"]] = row["total"]
    rows = {
        row["endpoint"]: row
        for row in qs.values("endpoint").order_by().annotate(**{c: Sum(c) for c in COUNTER_FIELDS})
    }
    out = []
    for endpoint in [*ENDPOINTS, *sorted(set(rows) - set(ENDPOINTS))]:
        row = {c: (rows.get(endpoint, {}).get(c) or 0) for c in COUNTER_FIELDS}
        row["endpoint"] = endpoint
        row["avg_latency_ms"] = (
            round(row["latency_ms_total"] / row["requests"], 1) if row["requests"] else None
        )
        row["rejections"] = sorted(codes.get(endpoint, {}).items(), key=lambda kv: -kv[1])
        out.append(row)
    return out


def _top(qs: QuerySet, group: str, order: str, limit: int) -> list[dict]:
    errors = F("rejected") + F("rate_limited") + F("failures")
    rows = (
        qs.values(group)
        .order_by()
        .annotate(
            requests_sum=Sum("requests"),
            sends_sum=Sum("sends"),
            errors_sum=Sum(errors),
        )
        .filter(requests_sum__gt=0)
        .annotate(error_rate=Cast(F("errors_sum"), FloatField()) / F("requests_sum"))
    )
    if order == "volume":
        rows = rows.order_by("-requests_sum", group)
    else:
        rows = rows.filter(errors_sum__gt=0).order_by("-error_rate", "-requests_sum", group)
    return list(rows[:limit])


def top_organizations(qs: QuerySet, order: str = "volume", limit: int = 10) -> list[dict]:
    rows = _top(qs, "organization_id", order, limit)
    names = Organization.objects.in_bulk([r["organization_id"] for r in rows])
    for row in rows:
        row["organization"] = names.get(row["organization_id"])
    return rows


def top_keys(qs: QuerySet, order: str = "volume", limit: int = 10) -> list[dict]:
    rows = _top(qs, "api_key_id", order, limit)
    keys = ApiKey.objects.select_related("organization").in_bulk([r["api_key_id"] for r in rows])
    for row in rows:
        row["api_key"] = keys.get(row["api_key_id"])
    return rows
