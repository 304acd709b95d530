"""Recipients of an organization: contacts, categories, subscriptions and the suppression list.

Suppressions are the send path's only source: one indexed query per send reads them. A
contact's `subscribed` flag and its subscriptions are the recipient's preferences; every change
to them is mirrored into `unsubscribe` suppressions by contacts.services, in one place.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Organization
from fluxomail.ids import new_id

ALL_MAIL = ""  # the scope of a suppression (or token) that holds back all mail


class CategoryQuerySet(models.QuerySet):
    def for_org(self, organization: Organization) -> "CategoryQuerySet":
        return self.filter(organization=organization)

    def ensure_defaults(self, organization: Organization) -> None:
        for key, (name, description) in Category.DEFAULTS.items():
            self.get_or_create(
                organization=organization,
                key=key,
                defaults={"name": name, "description": description},
            )


class Category(models.Model):
    """A kind of mail a recipient may opt out of (`bulk`, `newsletter`, ...); a policy names one."""

    DEFAULTS = {"bulk": ("Announcements and newsletters", "Mail sent to many recipients.")}

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="categories"
    )
    key = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = CategoryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["key"]
        constraints = [
            # Lookups by categoryKey (preferences, sync, tokens) within an organization.
            models.UniqueConstraint(fields=["organization", "key"], name="category_org_key"),
        ]

    def __str__(self) -> str:
        return self.key


class ContactQuerySet(models.QuerySet):
    def for_org(self, organization: Organization) -> "ContactQuerySet":
        return self.filter(organization=organization)


class Contact(models.Model):
    public_id = models.CharField(max_length=40, unique=True, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="contacts"
    )
    email = models.CharField(max_length=320, help_text="Normalised (fluxomail.addresses).")
    external_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=200, blank=True)
    subscribed = models.BooleanField(
        default=True, help_text="Off: unsubscribed from all mail (a global unsubscribe)."
    )
    plan = models.CharField(max_length=100, blank=True)
    plan_started_at = models.DateTimeField(null=True, blank=True)
    plan_ends_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ContactQuerySet.as_manager()

    class Meta:
        constraints = [
            # One contact per address and organization: preferences and sync look it up so.
            models.UniqueConstraint(fields=["organization", "email"], name="contact_org_email"),
        ]
        indexes = [
            # The dashboard's contact list walks one organization's contacts newest first.
            models.Index(fields=["organization", "-public_id"], name="contact_org_public_id"),
        ]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_id("contacts")
        super().save(*args, **kwargs)


class Subscription(models.Model):
    """A contact's choice for one category (no row: subscribed)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="subscriptions")
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="+")
    subscribed = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # A contact's subscriptions are read and upserted by (contact, category).
            models.UniqueConstraint(fields=["contact", "category"], name="subscription_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} {self.category}: {'on' if self.subscribed else 'off'}"


class Suppression(models.Model):
    """An address the organization's mail does not go to: for all mail, or one category.

    One row per cause (reason): lifting an unsubscribe never lifts a hard bounce of the same
    address, and each row keeps what caused it.
    """

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "hard bounce"
        COMPLAINT = "complaint", "complaint"
        UNSUBSCRIBE = "unsubscribe", "unsubscribe"
        MANUAL = "manual", "manual"

    # When several rows hold an address back, the one named in the dropped event.
    PRECEDENCE = (Reason.COMPLAINT, Reason.HARD_BOUNCE, Reason.MANUAL, Reason.UNSUBSCRIBE)

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    address = models.CharField(max_length=320, help_text="Normalised (fluxomail.addresses).")
    category = models.CharField(
        max_length=50, blank=True, help_text="A category's key; empty: all mail."
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    source_event = models.CharField(
        max_length=40, blank=True, help_text="The event (evt_…) that caused it, if any."
    )
    actor = models.CharField(max_length=200, blank=True, help_text="Who or what added it.")
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # The send path's check (organization, address IN (...), category IN ('', key)) is a
            # range of this index; it also makes adding a suppression insert-if-absent.
            models.UniqueConstraint(
                fields=["organization", "address", "category", "reason"],
                name="suppression_unique",
            ),
        ]
        indexes = [
            # The dashboard's list, newest first.
            models.Index(fields=["organization", "-created_at"], name="suppression_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason}, {self.scope_label})"

    @property
    def scope_label(self) -> str:
        return f"category {self.category}" if self.category else "all mail"


class SuppressionChange(models.Model):
    """The log of every suppression added or removed: who, why, when."""

    class Action(models.TextChoices):
        ADDED = "added"
        REMOVED = "removed"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    address = models.CharField(max_length=320)
    category = models.CharField(max_length=50, blank=True)
    reason = models.CharField(max_length=20, choices=Suppression.Reason.choices)
    source_event = models.CharField(max_length=40, blank=True)
    actor = models.CharField(max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # An address's history within an organization (dashboard, admin).
            models.Index(
                fields=["organization", "address", "-created_at"], name="supp_change_addr"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.address} ({self.reason}) by {self.actor}"


class SyncEvent(models.Model):
    """An `eventId` of a contacts sync row that was applied: a repeat is skipped as duplicate."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    event_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Duplicate detection: one batch's eventIds are read with one IN query.
            models.UniqueConstraint(fields=["organization", "event_id"], name="sync_event_unique"),
        ]

    def __str__(self) -> str:
        return self.event_id


class SyncRequest(models.Model):
    """An Idempotency-Key of POST /api/v1/contacts/sync and the answer it got (SPEC 3's rules)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            # The claim: the first INSERT of (organization, key) wins.
            models.UniqueConstraint(fields=["organization", "key"], name="sync_request_key"),
        ]
        indexes = [
            # purge_idempotency deletes by expiry.
            models.Index(fields=["expires_at"], name="sync_request_expires"),
        ]

    def __str__(self) -> str:
        return self.key
