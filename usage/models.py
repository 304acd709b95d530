from django.db import models

from accounts.models import ApiKey, Organization

# The summed counters of a UsageCounter row, in column order: written by usage.recording, read
# by usage.analytics and the admin.
COUNTER_FIELDS = (
    "requests",
    "sends",
    "suppressed",
    "replays",
    "rejected",
    "rate_limited",
    "failures",
    "global_endpoint_sends",
    "latency_ms_total",
)


class UsageCounter(models.Model):
    """Counters of one API key on one endpoint in one UTC hour; written by upsert only."""

    # Covered by the bucket's unique index and the (organization, hour) index: none of its own.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=20)
    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    requests = models.PositiveIntegerField(default=0)
    sends = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(
        default=0, help_text="200 answers that delivered nothing: the recipient is suppressed."
    )
    replays = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0, help_text="4xx answers other than 429.")
    rate_limited = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0, help_text="5xx answers.")
    global_endpoint_sends = models.PositiveIntegerField(default=0)
    latency_ms_total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert target: one row per (organization, key, endpoint, hour).
            models.UniqueConstraint(
                fields=["organization", "api_key", "endpoint", "hour"], name="usage_bucket"
            ),
        ]
        indexes = [
            # Charts and the admin read an organization's (or everyone's) rows by time range.
            models.Index(fields=["organization", "hour"], name="usage_org_hour"),
            models.Index(fields=["hour"], name="usage_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.hour:%Y-%m-%d %H}h"


class UsageRejection(models.Model):
    """4xx answers by error code, in the same buckets as UsageCounter."""

    # Covered by the bucket's unique index and the (organization, hour) index: none of its own.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=20)
    hour = models.DateTimeField()
    code = models.CharField(max_length=40)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert target, as for UsageCounter, plus the error code.
            models.UniqueConstraint(
                fields=["organization", "api_key", "endpoint", "hour", "code"],
                name="usage_rejection_bucket",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "hour"], name="usage_rej_org_hour"),
            models.Index(fields=["hour"], name="usage_rej_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.endpoint} {self.hour:%Y-%m-%d %H}h"
