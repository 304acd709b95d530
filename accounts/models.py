import hashlib
import hmac
import re
import secrets
import string
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from fluxomail import hotcache

# flx_ + 8-character public id + _ + secret (40 random alphanumerics, about 238 bits).
KEY_PATTERN = re.compile(r"^flx_([A-Za-z0-9]{8})_([A-Za-z0-9]{32,128})$")
_ALNUM = string.ascii_letters + string.digits
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# What a key name may not hold: C0 and C1 controls (tabs and line breaks among them), DEL, the
# Unicode line and paragraph separators, and what XML cannot carry (surrogates, U+FFFE, U+FFFF).
# The name is shown in pages, SVG charts (lxml refuses such text), CSV files and the admin.
_KEY_NAME_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
KEY_NAME_MESSAGE = "Key names may not contain control characters (tabs and line breaks included)."


def validate_key_name(name: str) -> None:
    if _KEY_NAME_FORBIDDEN.search(name):
        raise ValidationError(KEY_NAME_MESSAGE, code="control_character")


def key_digest(token: str) -> str:
    # The secret has over 200 bits of entropy, so a fast unsalted hash cannot be brute-forced;
    # a slow password hash would only cost every API request time.
    return hashlib.sha256(token.encode()).hexdigest()


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    paused = models.BooleanField(default=False)
    from_name = models.CharField(max_length=200, blank=True)
    from_email = models.EmailField(
        blank=True, help_text="Sending identity; empty uses the service's DEFAULT_FROM_EMAIL."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def pause(self) -> None:
        self.paused = True
        self.save(update_fields=["paused"])

    def resume(self) -> None:
        self.paused = False
        self.save(update_fields=["paused"])


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # One role per user and organization; also serves "my organizations" lookups.
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_manage_keys(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Scope(models.TextChoices):
    SEND_EMAIL = "send_email", "Send email"
    READ_SENDS = "read_sends", "Read sends"
    PREFERENCES_READ = "preferences_read", "Read preferences"
    PREFERENCES_MANAGE = "preferences_manage", "Manage preferences"
    CONTACTS_WRITE = "contacts_write", "Sync contacts"
    WEBHOOKS_MANAGE = "webhooks_manage", "Manage webhook endpoints"


# Keys by public id, with their organization (fluxomail/hotcache.py: at most 1 s old). The
# cached instance is the one requests get: they read it, and touch() records last_used_at on it,
# so that the once-a-minute write stays once a minute.
_KEYS = hotcache.HotCache()


class ApiKeyQuerySet(models.QuerySet):
    def for_org(self, organization: Organization) -> "ApiKeyQuerySet":
        return self.filter(organization=organization)

    def active(self) -> "ApiKeyQuerySet":
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )

    def for_token(self, token: str) -> "ApiKey | None":
        """The active key for a full token, or None. Compares digests in constant time."""
        match = KEY_PATTERN.match(token)
        if match is None:
            return None
        public_id = match.group(1)
        key = _KEYS.get(
            public_id,
            lambda: self.select_related("organization").filter(public_id=public_id).first(),
        )
        if key is None:
            # Spend the same digest work as a known id so that timing does not tell ids apart.
            hmac.compare_digest(key_digest(token), "0" * 64)
            return None
        if not hmac.compare_digest(key_digest(token), key.digest):
            return None
        if not key.is_active:
            return None
        return key


class ApiKeyManager(models.Manager.from_queryset(ApiKeyQuerySet)):
    def create_key(
        self,
        *,
        organization: Organization,
        name: str,
        scopes: list[str] | None = None,
        rate_limit_per_minute: int | None = None,
        created_by=None,
        expires_at=None,
    ) -> tuple["ApiKey", str]:
        """Creates a key and returns it with its full token; the token is never stored.

        Raises ValidationError for a name that `validate_key_name` refuses.
        """
        validate_key_name(name)
        key = self.model(
            organization=organization,
            name=name,
            scopes=list(scopes or []),
            rate_limit_per_minute=rate_limit_per_minute,
            created_by=created_by,
            expires_at=expires_at,
        )
        token = key.issue_token()
        key.save()
        return key, token


class ApiKey(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, validators=[validate_key_name])
    public_id = models.CharField(max_length=8, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty means no cap."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        indexes = [
            # The keys page and admin list an organization's keys, newest first.
            models.Index(fields=["organization", "-created_at"], name="apikey_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def prefix(self) -> str:
        return f"flx_{self.public_id}"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def issue_token(self) -> str:
        """Gives a new (unsaved) key its public id and digest; returns the full token once."""
        while True:
            public_id = "".join(secrets.choice(_ALNUM) for _ in range(8))
            if not ApiKey.objects.filter(public_id=public_id).exists():
                break
        token = f"flx_{public_id}_" + "".join(secrets.choice(_ALNUM) for _ in range(40))
        self.public_id = public_id
        self.digest = key_digest(token)
        return token

    def has_scope(self, scope: str) -> bool:
        # An empty scope list may send mail and nothing else (backward compatibility).
        if not self.scopes:
            return scope == Scope.SEND_EMAIL
        return scope in self.scopes

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
                revoked_at=self.revoked_at
            )
            hotcache.clear_all()

    def touch(self) -> None:
        """Records use at most once a minute: no write on the hot path most of the time."""
        now = timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < _LAST_USED_RESOLUTION:
            return
        ApiKey.objects.filter(pk=self.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - _LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        self.last_used_at = now
