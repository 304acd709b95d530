"""Outbound webhooks: endpoints of an organization, one delivery per (event, endpoint), and the
log of every attempt (SPEC.md section 11)."""

import fnmatch

from django.db import models
from django.utils import timezone

from accounts.models import Organization
from fluxomail.ids import new_id
from sends.models import Event
from webhooks import signing


class EndpointQuerySet(models.QuerySet):
    def for_org(self, organization: Organization) -> "EndpointQuerySet":
        return self.filter(organization=organization)


class Endpoint(models.Model):
    public_id = models.CharField(max_length=40, unique=True, editable=False)
    # Covered by endpoint_org.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(default=list, help_text="Event types; `email.*` for all.")
    enabled = models.BooleanField(default=True)
    # Kept in the clear: signing needs it. The previous secret signs too until it expires.
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Deliveries in a row that ran out of attempts; a success resets it.
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        indexes = [
            # An organization's endpoints: the API list, and the fan-out of every event.
            models.Index(fields=["organization", "public_id"], name="endpoint_org"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.url}"

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_id("whep")
        if not self.secret:
            self.secret = signing.new_secret()
        super().save(*args, **kwargs)

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)

    def signing_secrets(self, now=None) -> list[str]:
        """The newest secret first, then the previous one while its overlap lasts."""
        now = now or timezone.now()
        secrets = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at
            and (self.previous_secret_expires_at > now)
        ):
            secrets.append(self.previous_secret)
        return secrets


class Delivery(models.Model):
    """One envelope to one endpoint, with its attempts; the row is the job."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    public_id = models.CharField(max_length=40, unique=True, editable=False)
    # Covered by delivery_endpoint.
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # Null for a test delivery. Covered by delivery_event_endpoint.
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The envelope's id and type (webhook-id), and the exact bytes sent at every attempt.
    message_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=30)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The claim: a worker owns the row until then (a killed worker's claim runs out).
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            # The fan-out inserts (event, endpoint) once, however often it runs.
            models.UniqueConstraint(
                fields=["event", "endpoint"],
                name="delivery_event_endpoint",
                condition=models.Q(event__isnull=False),
            ),
        ]
        indexes = [
            # The sweeper: pending deliveries by due time.
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(status="pending"),
            ),
            # An endpoint's delivery log, newest first.
            models.Index(fields=["endpoint", "-public_id"], name="delivery_endpoint"),
            # The purge of finished deliveries past the log's retention.
            models.Index(fields=["created_at"], name="delivery_created"),
        ]

    def __str__(self) -> str:
        return self.public_id

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_id("whdl")
        super().save(*args, **kwargs)


class Attempt(models.Model):
    """One POST of a delivery: what the endpoint answered, or why it could not."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_body = models.TextField(blank=True, help_text="The first 1 KB of the answer.")
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # The purge of attempts past the log's retention.
            models.Index(fields=["created_at"], name="attempt_created"),
        ]

    def __str__(self) -> str:
        # The label of an admin inline row: which attempt, when, and what came of it.
        if self.status_code is not None:
            outcome = f"HTTP {self.status_code}"
        else:
            outcome = self.error or "no answer"
        return f"Attempt {self.number} at {self.created_at:%Y-%m-%d %H:%M:%S}: {outcome}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class FanoutCursor(models.Model):
    """How far the sweeper's catch-up has read the event log (one row)."""

    name = models.CharField(max_length=20, unique=True)
    position = models.CharField(max_length=40, help_text="The last event id looked at.")

    def __str__(self) -> str:
        return f"{self.name}: {self.position}"
