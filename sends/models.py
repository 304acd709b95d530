from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.models import ApiKey, Organization
from contacts.models import Category
from fluxomail import hotcache
from fluxomail.ids import new_id

# Policies by (organization id, key) (fluxomail/hotcache.py: at most 1 s old).
_POLICIES = hotcache.HotCache()


class PolicyQuerySet(models.QuerySet):
    def cached(self, organization: Organization, key: str) -> "Policy | None":
        """The organization's policy `key`, or None, through the per-process hot cache (the
        instance is shared with the other requests of the next second: read it only)."""
        return _POLICIES.get(
            (organization.pk, key),
            lambda: self.filter(organization=organization, key=key).first(),
        )

    def ensure_defaults(self, organization: Organization) -> None:
        for key, defaults in Policy.DEFAULTS.items():
            self.get_or_create(organization=organization, key=key, defaults=defaults)
        Category.objects.ensure_defaults(organization)


class Policy(models.Model):
    """How an organization's mail of one kind is handled (`transactional`, `bulk`, ...)."""

    # Bulk mail may be opted out of (its category) and carries one-click unsubscribe (RFC 8058);
    # transactional mail names no category.
    DEFAULTS = {
        "transactional": {},
        "bulk": {"category": "bulk", "one_click_unsubscribe": True},
    }
    DEFAULT_KEYS = tuple(DEFAULTS)

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="policies"
    )

    class DeliveryMode(models.TextChoices):
        DEFAULT = "", "The service's DELIVERY_MODE"
        SYNC = "sync", "In the request (sync)"
        QUEUE = "queue", "By a worker (queue)"

    key = models.SlugField(max_length=50)
    track_opens = models.BooleanField(default=True)
    track_clicks = models.BooleanField(default=True)
    category = models.SlugField(
        max_length=50,
        blank=True,
        help_text="Key of the contacts category this mail belongs to; empty: transactional "
        "(held back only by bounces, complaints, manual and global suppressions).",
    )
    one_click_unsubscribe = models.BooleanField(
        default=False,
        help_text="Add List-Unsubscribe (RFC 8058 one-click) headers and an unsubscribe footer.",
    )
    delivery_mode = models.CharField(
        max_length=5, choices=DeliveryMode.choices, default=DeliveryMode.DEFAULT, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "policies"
        constraints = [
            # policyKey lookups on every send: (organization, key).
            models.UniqueConstraint(fields=["organization", "key"], name="policy_org_key"),
        ]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        # An unsubscribe link names the category; one the organization lacks would not verify.
        if (
            self.category
            and not (
                Category.objects.filter(organization_id=self.organization_id, key=self.category)
            ).exists()
        ):
            raise ValidationError({"category": "The organization has no category with this key."})


class SendQuerySet(models.QuerySet):
    def for_org(self, organization: Organization) -> "SendQuerySet":
        return self.filter(organization=organization)


class Send(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        SUPPRESSED = "suppressed", "Suppressed"
        FAILED = "failed", "Failed"

    class Endpoint(models.TextChoices):
        SEND = "send", "send"
        SEND_GLOBAL = "send-global", "send-global"

    # Unique by send_public_id (Meta): a field's unique=True would add a LIKE index on
    # PostgreSQL that no query uses.
    public_id = models.CharField(max_length=40, editable=False)
    # Covered by send_org_public_id and send_org_to: no index of its own.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="sends", db_index=False
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends"
    )
    endpoint = models.CharField(max_length=20, choices=Endpoint.choices)
    to = models.CharField(max_length=500)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=998)
    policy_key = models.CharField(max_length=50, default="transactional")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    request_id = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # What was attached, never the content: [{"filename", "contentType", "size"}], the type as it
    # went out (given, or guessed from the name) and the size decoded, in bytes. Written by the
    # send's own INSERT; null on sends made before it was recorded. Retention leaves it.
    attachments = models.JSONField(
        null=True, blank=True, help_text="Name, type and size of each attachment (no content)."
    )
    suppressed = models.JSONField(
        default=list, blank=True, help_text="cc/bcc addresses left out: on the suppression list."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # The first human open and the first click: set once by a conditional UPDATE, so that the
    # metrics count unique opens and clicks exactly, without scanning events.
    first_opened_at = models.DateTimeField(null=True, blank=True)
    first_clicked_at = models.DateTimeField(null=True, blank=True)

    objects = SendQuerySet.as_manager()

    class Meta:
        constraints = [
            # Lookups by public id (the API, the timeline, tracking, the admin's exact search).
            models.UniqueConstraint(fields=["public_id"], name="send_public_id"),
        ]
        indexes = [
            # Send lists (API, dashboard) walk one organization's sends newest first by id.
            models.Index(fields=["organization", "-public_id"], name="send_org_public_id"),
            # Admin and API searches by recipient within an organization.
            models.Index(fields=["organization", "to"], name="send_org_to"),
        ]

    def __str__(self) -> str:
        return self.public_id

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_id("sends")
        super().save(*args, **kwargs)

    def mark(self, status: str) -> None:
        self.status = status
        self.updated_at = timezone.now()
        Send.objects.filter(pk=self.pk).update(status=status, updated_at=self.updated_at)


class MessageQuerySet(models.QuerySet):
    def for_provider_ids(self, provider_message_ids: set[str]) -> dict[str, "Message"]:
        """The messages that providers' webhooks name by their ids, with their sends: the
        newest per id, should two providers ever have used the same id. Two queries whatever
        their number (one when every id is a message's whole id); the bodies are not read."""
        found: dict[str, Message] = {}
        wanted = set(provider_message_ids)
        messages = self.select_related("send").defer(*Message.BODY_FIELDS).order_by("id")
        if wanted:
            for message in messages.filter(provider_message_id__in=wanted):
                found[message.provider_message_id] = message
        wanted -= found.keys()
        if wanted:
            # A message the provider gave one id per recipient (ProviderMessageId).
            by_part = messages.filter(provider_ids__provider_message_id__in=wanted).annotate(
                matched_id=models.F("provider_ids__provider_message_id")
            )
            for message in by_part:
                found[message.matched_id] = message
        return found


class Message(models.Model):
    """One delivery attempt of a send."""

    # The longest provider_message_id: the ids of 50 recipients of up to 39 characters, joined;
    # under PostgreSQL's 2,704-byte limit of a btree index entry.
    PROVIDER_ID_MAX_LENGTH = 2000
    # What the event log never needs of a message (webhooks defer them when matching events).
    BODY_FIELDS = ("text", "html", "headers")

    send = models.ForeignKey(Send, on_delete=models.CASCADE, related_name="messages")
    from_email = models.CharField(max_length=500)
    to = models.JSONField(default=list, help_text="Envelope recipients (to, cc and bcc).")
    provider = models.CharField(max_length=100)
    # The provider's id; its ids joined by "," when it gave one per recipient.
    provider_message_id = models.CharField(max_length=PROVIDER_ID_MAX_LENGTH, blank=True)
    feedback_id = models.CharField(max_length=255, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When the retention job blanked text, html and headers (RETENTION_DAYS after sending).
    body_purged_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # Admin search by provider message id; a provider webhook's message.
            models.Index(fields=["provider_message_id"], name="message_provider_id"),
            # The retention purge: messages whose body is still there, oldest first. Partial,
            # so it holds only the last RETENTION_DAYS of messages.
            models.Index(
                fields=["created_at"],
                name="message_unpurged",
                condition=models.Q(body_purged_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        # The label of an admin inline row: when and through which provider, never bare ids.
        return (
            f"Attempt via {self.provider or 'no provider'} at {self.created_at:%Y-%m-%d %H:%M:%S}"
        )

    def save_provider_ids(self) -> None:
        """Indexes each id of a message that the provider gave several ids (one per
        recipient): its webhooks name one of them. One id needs no row."""
        ids = self.provider_message_id.split(",")
        if len(ids) > 1:
            ProviderMessageId.objects.bulk_create(
                ProviderMessageId(message=self, provider_message_id=value)
                for value in ids
                if len(value) <= ProviderMessageId.ID_MAX_LENGTH
            )


class ProviderMessageId(models.Model):
    """One of the ids a provider gave one message, one per recipient (Mandrill, Mailjet, Postal,
    … with cc or bcc)."""

    ID_MAX_LENGTH = 255

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="provider_ids")
    provider_message_id = models.CharField(max_length=ID_MAX_LENGTH)

    class Meta:
        indexes = [
            # A provider webhook's message, when the message has several ids.
            models.Index(fields=["provider_message_id"], name="provider_id_lookup"),
        ]

    def __str__(self) -> str:
        return self.provider_message_id


class QueuedSend(models.Model):
    """A send accepted in queue mode: the job row a worker delivers from (DELIVERY_MODE).

    `payload` is the request's validated body (attachments in base64), kept only until the
    send is sent or failed; the row goes then.
    """

    send = models.OneToOneField(Send, on_delete=models.CASCADE, related_name="job")
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # The claim: a worker owns the row until then (a killed worker's claim runs out).
    locked_until = models.DateTimeField(null=True, blank=True)
    # Deferrals are retried until then (DELIVERY_RETRY_HOURS after acceptance).
    deadline = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The sweeper: jobs by due time.
            models.Index(fields=["next_attempt_at"], name="queued_send_due"),
        ]

    def __str__(self) -> str:
        return f"job of {self.send_id}"


class EventQuerySet(models.QuerySet):
    def for_org(self, organization: Organization) -> "EventQuerySet":
        return self.filter(organization=organization)


class Event(models.Model):
    """One event of a send: the event log that every reader shows as the same envelope.

    `public_id` (`evt_…`) sorts by the time the row was recorded; `occurred_at` is when the
    event happened (a provider's webhook may report it later). The filter columns
    (`recipient_domain`, `smtp_code`, `mta_host`) copy members of `data` so that the events
    API answers each filter from an index range.
    """

    class Type(models.TextChoices):
        SENT = "email.sent", "sent"
        DELIVERED = "email.delivered", "delivered"
        DELAYED = "email.delayed", "delayed"
        BOUNCED = "email.bounced", "bounced"
        COMPLAINED = "email.complained", "complained"
        OPENED = "email.opened", "opened"
        CLICKED = "email.clicked", "clicked"
        FAILED = "email.failed", "failed"
        DROPPED = "email.dropped", "dropped"

    # Unique by event_public_id (Meta): no LIKE index, which no query uses.
    public_id = models.CharField(max_length=40, editable=False)
    # Covered by the (organization, …) indexes below: no index of its own.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # Covered by event_send_time.
    send = models.ForeignKey(Send, on_delete=models.CASCADE, related_name="events", db_index=False)
    # Messages go only with their send (whose events go too): no index to keep up per event.
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
    )
    type = models.CharField(max_length=20, choices=Type.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    recipient_domain = models.CharField(max_length=255, blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    mta_host = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # A provider's event recorded once: a digest of (provider message id, type, provider event
    # id); null for the service's own events. Unique by event_dedupe_key (Meta).
    dedupe_key = models.CharField(max_length=64, null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            # Lookups by public id (the timeline, the events API's cursor, the admin).
            models.UniqueConstraint(fields=["public_id"], name="event_public_id"),
            # A provider's event recorded once (the INSERT that fails on a repeat).
            models.UniqueConstraint(fields=["dedupe_key"], name="event_dedupe_key"),
        ]
        indexes = [
            # A send's timeline in time order (and its cursor by time).
            models.Index(fields=["send", "occurred_at"], name="event_send_time"),
            # GET /api/v1/events, the stream's catch-up: one organization's events by id.
            models.Index(fields=["organization", "-public_id"], name="event_org_id"),
            # … filtered by type (`types`, wildcards expanded to a list).
            models.Index(fields=["organization", "type", "-public_id"], name="event_org_type"),
            # … filtered by recipient domain.
            models.Index(
                fields=["organization", "recipient_domain", "-public_id"], name="event_org_domain"
            ),
            # … filtered by SMTP code or MTA host: only events that carry one are indexed.
            models.Index(
                fields=["organization", "smtp_code", "-public_id"],
                name="event_org_smtp_code",
                condition=models.Q(smtp_code__isnull=False),
            ),
            models.Index(
                fields=["organization", "mta_host", "-public_id"],
                name="event_org_mta_host",
                condition=~models.Q(mta_host=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.type})"

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_id("evt")
        if self.organization_id is None and self.send_id is not None:
            self.organization_id = self.send.organization_id
        super().save(*args, **kwargs)


class EventCounter(models.Model):
    """How many events of one kind an organization had in one UTC hour: the metrics' source.

    Written by upsert as events are recorded (sends.events), read by GET /api/v1/metrics and
    the dashboard, so neither ever scans sends or events.
    """

    class Name(models.TextChoices):
        SENT = "sent"
        DELIVERED = "delivered"
        DELAYED = "delayed"
        BOUNCED = "bounced"
        COMPLAINED = "complained"
        OPENED = "opened", "opened (human)"
        UNIQUE_OPENED = "unique_opened", "sends opened (human)"
        CLICKED = "clicked"
        UNIQUE_CLICKED = "unique_clicked", "sends clicked"
        FAILED = "failed"
        DROPPED = "dropped"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    name = models.CharField(max_length=20, choices=Name.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert target, and the metrics' range scan by (organization, hour).
            models.UniqueConstraint(
                fields=["organization", "hour", "name"], name="event_counter_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.hour:%Y-%m-%d %H}h: {self.count}"


class IdempotencyRecord(models.Model):
    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    # Covered by idem_org_key: no index of its own.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="idempotency_records", db_index=False
    )
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=20)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_PROGRESS)
    locked_at = models.DateTimeField(null=True, blank=True)
    send = models.ForeignKey(
        Send, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            # The claim: the first INSERT of (organization, key) wins; everyone else reads it.
            models.UniqueConstraint(fields=["organization", "key"], name="idem_org_key"),
        ]
        indexes = [
            # purge_idempotency deletes by expiry.
            models.Index(fields=["expires_at"], name="idem_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
