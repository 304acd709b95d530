"""The OpenAPI 3 document (/api/v1/openapi.json) and its human docs page (/api/v1/docs).

drf-spectacular builds the document from the views; this module adds what it cannot infer:
the key authentication, the request and response bodies of the send API, every error answer
(application/json or application/problem+json, SPEC.md section 4) and the headers. The
annotations are applied here, where the views are imported, so that the views stay free of
documentation code.
"""

from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from accounts import token_api, tokens
from accounts.models import Scope
from contacts import api as contacts_api
from fluxomail.api import ERROR_CONTENT_TYPES, JSON_CONTENT_TYPE, TITLES
from sends import event_api, events, stream, timeline, views
from sends.models import Send
from webhooks import api as webhook_api

SEND_STATUSES = list(Send.Status.values)

# -- authentication ---------------------------------------------------------------------------


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <key>` or `x-api-key: <key>` (SPEC.md section 2), and the
    `token` query parameter where a view takes it (the event stream, SPEC.md section 8)."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyHeader", "tokenQuery"]

    def _names(self, auto_schema) -> list[str]:
        takes_query = getattr(auto_schema.view, "accepts_query_token", False)
        return self.name if takes_query else self.name[:2]

    def get_security_requirement(self, auto_schema) -> list[dict]:
        # Each one authenticates alone: alternatives, not all at once.
        return [{name: []} for name in self._names(auto_schema)]

    def get_security_definition(self, auto_schema) -> list[dict]:
        definitions = [
            {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "An API key (`flx_` + 8-character id + `_` + secret) or, on GET requests, "
                    "a short-lived token (`flxt_…`, from POST /api/v1/tokens)."
                ),
            },
            {"type": "apiKey", "in": "header", "name": "x-api-key"},
            {
                "type": "apiKey",
                "in": "query",
                "name": "token",
                "description": "An API key or a short-lived token, for EventSource clients.",
            },
        ]
        return definitions[: len(self._names(auto_schema))]


# -- bodies -----------------------------------------------------------------------------------


class ProblemSerializer(serializers.Serializer):
    """Every error: RFC 9457 members plus the fields Fluxomail's docs and SDK read.

    Served as `application/problem+json` when the request's `Accept` names it (with a weight no
    lower than `application/json`'s), as `application/json` otherwise.
    """

    type = serializers.CharField(help_text="`/docs/errors/<code>`")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.ChoiceField(choices=sorted(TITLES))
    error = serializers.CharField(help_text="Same as `message`.")
    message = serializers.CharField()
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name to messages on a 400; `{}` otherwise.",
    )
    requestId = serializers.CharField()  # noqa: N815 (wire name)
    sendId = serializers.CharField(  # noqa: N815
        required=False, help_text="On a 500 after the send was created."
    )

    class Meta:
        ref_name = "Problem"


@extend_schema_field({"type": "string", "format": "email", "maxLength": 320})
class _Address(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "minLength": 1, "pattern": "^[^\\r\\n]+$"})
class _OneLine(serializers.CharField):
    pass


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "email"},
            {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 50},
        ],
        "description": "One address or a list; at most 50 recipients in to, cc and bcc.",
    }
)
class _Recipients(serializers.Field):
    pass


class _AttachmentSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255)
    contentBase64 = serializers.CharField()  # noqa: N815
    contentType = serializers.CharField(required=False)  # noqa: N815

    class Meta:
        ref_name = "Attachment"


class SendEmailRequestSerializer(serializers.Serializer):
    """The send body (SPEC.md section 3). Unknown fields are refused with a 400."""

    to = _Address(help_text="One address; `Name <addr>` allowed.")
    subject = _OneLine(max_length=998)
    content = serializers.CharField(help_text="The text/plain part, at most 1 MB.")
    htmlContent = serializers.CharField(  # noqa: N815
        required=False,
        help_text=(
            "The text/html part: CSS inlined, tracking injected. At most 1 MB, 10,000 tags, "
            "100 attributes on one tag and 30,000 in all, 1,000 links (README, Body)."
        ),
    )
    cc = _Recipients(required=False)
    bcc = _Recipients(required=False)
    attachments = _AttachmentSerializer(many=True, required=False, max_length=5)
    policyKey = serializers.CharField(  # noqa: N815
        required=False, help_text="`transactional` (default) or `bulk`, or the org's own."
    )
    idempotencyKey = serializers.CharField(  # noqa: N815
        required=False, max_length=255, help_text="For clients that cannot set the header."
    )
    fromName = _OneLine(required=False, max_length=200)  # noqa: N815
    fromEmail = serializers.EmailField(  # noqa: N815
        required=False, help_text="An address on the organization's sending domain."
    )
    replyTo = _Address(required=False)  # noqa: N815
    headers = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="`X-…`/`List-…`, at most 20; each line `Name: value` at most 998 characters.",
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=500), required=False, help_text="At most 10 keys."
    )

    class Meta:
        ref_name = "SendEmailRequest"


class SendEmailResultSerializer(serializers.Serializer):
    sendId = serializers.CharField()  # noqa: N815
    status = serializers.ChoiceField(
        choices=["sent", "queued", "suppressed", "failed"],
        help_text=(
            "`queued` in queue mode (a worker delivers; a replay answers the current one); "
            "`suppressed`: the recipient is on the suppression list, nothing was sent."
        ),
    )
    messageId = serializers.CharField(  # noqa: N815
        allow_null=True, help_text="Null until a message was handed to the provider."
    )
    reused = serializers.BooleanField(help_text="True on an idempotent replay.")

    class Meta:
        ref_name = "SendEmailResult"


class SendSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`sends_` + 26 characters, sortable by time.")
    to = serializers.CharField()
    subject = serializers.CharField()
    status = serializers.ChoiceField(choices=SEND_STATUSES)
    policy = serializers.CharField()
    endpoint = serializers.ChoiceField(choices=["send", "send-global"])
    idempotencyKey = serializers.CharField(allow_null=True)  # noqa: N815
    requestId = serializers.CharField(allow_null=True)  # noqa: N815
    metadata = serializers.DictField(child=serializers.CharField())
    createdAt = serializers.DateTimeField()  # noqa: N815
    updatedAt = serializers.DateTimeField()  # noqa: N815

    class Meta:
        ref_name = "Send"


class SendPageSerializer(serializers.Serializer):
    data = SendSerializer(many=True)
    nextCursor = serializers.CharField(  # noqa: N815
        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last."
    )

    class Meta:
        ref_name = "SendPage"


class MessageAttemptSerializer(serializers.Serializer):
    provider = serializers.CharField()
    # "from" is a keyword: declared under another name, renamed in get_fields.
    from_ = serializers.CharField()
    to = serializers.ListField(child=serializers.CharField())
    providerMessageId = serializers.CharField(allow_null=True)  # noqa: N815
    feedbackId = serializers.CharField(allow_null=True)  # noqa: N815
    error = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()  # noqa: N815
    bodyPurgedAt = serializers.DateTimeField(  # noqa: N815
        allow_null=True, help_text="When the body was blanked (RETENTION_DAYS after sending)."
    )

    class Meta:
        ref_name = "MessageAttempt"

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class EnvelopeDataSerializer(serializers.Serializer):
    """The send's members, then the type's own (more properties): opened `machine`; clicked
    `url`; bounced `bounceType` (hard or soft) and `reason`; complained `feedbackType`; delayed
    and failed `reason`, `smtpCode`, `mtaHost`; dropped `reason`."""

    sendId = serializers.CharField()  # noqa: N815
    providerMessageId = serializers.CharField(allow_null=True)  # noqa: N815
    to = serializers.CharField()
    subject = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())

    class Meta:
        ref_name = "EventData"


class EnvelopeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`evt_` + 26 characters, sortable by time; unique.")
    type = serializers.ChoiceField(choices=list(events.ALL_TYPES))
    created = serializers.DateTimeField()
    data = EnvelopeDataSerializer()

    class Meta:
        ref_name = "EventEnvelope"


class EventPageSerializer(serializers.Serializer):
    events = EnvelopeSerializer(many=True)
    nextCursor = serializers.CharField(  # noqa: N815
        allow_null=True, help_text="Pass as `cursor` for older events; null on the last page."
    )

    class Meta:
        ref_name = "EventPage"


def _event_types(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=[*events.ALL_TYPES, events.WILDCARD]),
        min_length=1,
        max_length=webhook_api.MAX_EVENT_TYPES,
        **kwargs,
    )


class WebhookEndpointCreateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, help_text="http(s), no user name or password.")
    eventTypes = _event_types(  # noqa: N815
        required=False, help_text="Event types to deliver; `email.*` (the default) for all."
    )
    enabled = serializers.BooleanField(required=False, default=True)

    class Meta:
        ref_name = "WebhookEndpointCreate"


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, required=False)
    eventTypes = _event_types(required=False)  # noqa: N815
    enabled = serializers.BooleanField(
        required=False, help_text="`true` also clears an automatic disabling."
    )
    rotateSecret = serializers.BooleanField(  # noqa: N815
        required=False,
        help_text="A new secret, in this answer only; the old one keeps signing for 24 hours.",
    )

    class Meta:
        ref_name = "WebhookEndpointUpdate"


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`whep_` + 26 characters.")
    url = serializers.CharField()
    eventTypes = serializers.ListField(child=serializers.CharField())  # noqa: N815
    enabled = serializers.BooleanField()
    disabledReason = serializers.CharField(  # noqa: N815
        allow_null=True, help_text="Why the service disabled it (20 events failed in a row)."
    )
    createdAt = serializers.DateTimeField()  # noqa: N815
    updatedAt = serializers.DateTimeField()  # noqa: N815

    class Meta:
        ref_name = "WebhookEndpoint"


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        required=False, help_text="`whsec_…`: at creation and rotation only."
    )

    class Meta:
        ref_name = "WebhookEndpointWithSecret"


class WebhookEndpointListSerializer(serializers.Serializer):
    data = WebhookEndpointSerializer(many=True)

    class Meta:
        ref_name = "WebhookEndpointList"


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`whdl_` + 26 characters.")
    eventId = serializers.CharField(help_text="The envelope's id (`webhook-id`).")  # noqa: N815
    eventType = serializers.CharField()  # noqa: N815
    status = serializers.ChoiceField(choices=["pending", "succeeded", "failed"])
    attempts = serializers.IntegerField()
    nextAttemptAt = serializers.DateTimeField(allow_null=True)  # noqa: N815
    createdAt = serializers.DateTimeField()  # noqa: N815

    class Meta:
        ref_name = "WebhookDelivery"


class WebhookTestSerializer(serializers.Serializer):
    delivery = WebhookDeliverySerializer()

    class Meta:
        ref_name = "WebhookTest"


class _WindowSerializer(serializers.Serializer):
    preset = serializers.ChoiceField(choices=["24h", "7d", "30d", "all"], allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField()

    class Meta:
        ref_name = "MetricsWindow"


class _ScannedSerializer(serializers.Serializer):
    sends = serializers.IntegerField()
    sendScanLimit = serializers.IntegerField(allow_null=True)  # noqa: N815

    class Meta:
        ref_name = "MetricsScanned"


class _MetricValuesSerializer(serializers.Serializer):
    class Meta:
        ref_name = "MetricValues"

    def get_fields(self):
        counts = ["totalSent", "totalDelivered", "totalOpened", "uniqueOpens", "totalClicked"]
        counts += ["uniqueClicks", "totalBounced", "totalComplained", "totalDelayed"]
        rates = ["deliveryRate", "avgOpenRate", "avgClickRate", "avgClickToOpenRate"]
        rates += ["bounceRate", "complaintRate", "delayedRate"]
        fields = {name: serializers.IntegerField() for name in counts}
        fields |= {name: serializers.FloatField() for name in rates}
        return fields


class MetricsSerializer(serializers.Serializer):
    window = _WindowSerializer()
    scanned = _ScannedSerializer()
    metrics = _MetricValuesSerializer()

    class Meta:
        ref_name = "Metrics"


class EngagementSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    machineCount = serializers.IntegerField()  # noqa: N815
    firstAt = serializers.DateTimeField(allow_null=True)  # noqa: N815
    lastAt = serializers.DateTimeField(allow_null=True)  # noqa: N815

    class Meta:
        ref_name = "Engagement"


class SendTimelineSerializer(serializers.Serializer):
    send = SendSerializer()
    messages = MessageAttemptSerializer(many=True)
    events = EnvelopeSerializer(many=True)
    nextCursor = serializers.CharField(  # noqa: N815
        allow_null=True, help_text="Pass as `cursor` for older events; null on the last page."
    )
    opens = EngagementSerializer()
    clicks = EngagementSerializer()

    class Meta:
        ref_name = "SendTimeline"


class _CategorySerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()

    class Meta:
        ref_name = "Category"


class _SubscriptionSerializer(serializers.Serializer):
    categoryKey = serializers.CharField(max_length=50)  # noqa: N815
    subscribed = serializers.BooleanField()

    class Meta:
        ref_name = "SubscriptionChoice"


class _ContactRefSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`contacts_` + 26 characters.")
    email = serializers.CharField()

    class Meta:
        ref_name = "ContactRef"


class PreferencesSerializer(serializers.Serializer):
    contact = _ContactRefSerializer()
    categories = _CategorySerializer(many=True)
    subscriptions = _SubscriptionSerializer(many=True)
    subscribed = serializers.BooleanField(help_text="False: unsubscribed from all mail.")

    class Meta:
        ref_name = "Preferences"


class PreferencesUpdateSerializer(serializers.Serializer):
    token = serializers.CharField(
        required=False, max_length=1000, help_text="The recipient's token (no key needed)."
    )
    email = serializers.CharField(
        required=False, max_length=254, help_text="With a key holding preferences_manage."
    )
    subscriptions = _SubscriptionSerializer(many=True, max_length=100)
    subscribed = serializers.BooleanField(required=False)

    class Meta:
        ref_name = "PreferencesUpdate"


class OkSerializer(serializers.Serializer):
    ok = serializers.BooleanField()

    class Meta:
        ref_name = "Ok"


# anyOf, not oneOf: the two forms cannot overlap anyway, and oneOf makes generators (Hypothesis,
# for schemathesis) filter every candidate against both branches, deep in a batch of 1,000 rows.
_SYNC_MOMENT = {
    "nullable": True,
    "anyOf": [
        {"type": "string", "format": "date-time", "maxLength": 40},
        {"type": "integer", "minimum": 0, "description": "Epoch milliseconds."},
    ],
}


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 320},
            "externalId": {"type": "string", "nullable": True, "maxLength": 255},
            "name": {"type": "string", "nullable": True, "maxLength": 200},
            "plan": {"type": "string", "nullable": True, "maxLength": 100},
            "state": {"type": "string", "nullable": True, "maxLength": 100},
            "subscribed": {"type": "boolean"},
            "deleted": {"type": "boolean", "description": "True deletes the contact."},
            "sourceUpdatedAt": _SYNC_MOMENT,
            "planStartedAt": _SYNC_MOMENT,
            "planEndsAt": _SYNC_MOMENT,
            "categories": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                    {"type": "object", "additionalProperties": {"type": "boolean"}},
                ],
                "description": "Keys subscribed to, or key to true/false.",
            },
            "metadata": {"type": "object", "maxProperties": 20},
            "eventId": {"type": "string", "minLength": 1, "maxLength": 255},
        },
    }
)
class _ContactRow(serializers.Field):
    pass


class ContactsSyncRequestSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=100)
    contacts = serializers.ListField(child=_ContactRow(), min_length=1, max_length=1000)

    class Meta:
        ref_name = "ContactsSyncRequest"


class _SyncErrorSerializer(serializers.Serializer):
    email = serializers.CharField(allow_blank=True)
    message = serializers.CharField()

    class Meta:
        ref_name = "ContactsSyncError"


class ContactsSyncResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    source = serializers.CharField()
    processed = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    failed = serializers.IntegerField()
    skippedStale = serializers.IntegerField()  # noqa: N815
    skippedDuplicate = serializers.IntegerField()  # noqa: N815
    unsubscribed = serializers.IntegerField()
    resubscribed = serializers.IntegerField()
    replayed = serializers.BooleanField()
    syncedAt = serializers.DateTimeField()  # noqa: N815
    errors = _SyncErrorSerializer(many=True)

    class Meta:
        ref_name = "ContactsSyncResult"


class TokenRequestSerializer(serializers.Serializer):
    ttlSeconds = serializers.IntegerField(  # noqa: N815
        required=False,
        min_value=1,
        max_value=tokens.MAX_TTL_SECONDS,
        default=tokens.DEFAULT_TTL_SECONDS,
        help_text="Lifetime in seconds.",
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.values),
        required=False,
        min_length=1,
        help_text="A subset of the key's scopes; the key's scopes when left out.",
    )

    class Meta:
        ref_name = "TokenRequest"


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="`flxt_…`; accepted on GET requests only.")
    expiresAt = serializers.DateTimeField()  # noqa: N815

    class Meta:
        ref_name = "Token"


# -- headers ----------------------------------------------------------------------------------

_STR = OpenApiTypes.STR
_HEADER = OpenApiParameter.HEADER
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}

REQUEST_ID_HEADERS = [
    OpenApiParameter(
        "X-Request-Id",
        _STR,
        _HEADER,
        description="Echoed when 1 to 128 characters of [A-Za-z0-9._-]; else generated.",
    ),
    OpenApiParameter(
        "X-Request-Id",
        _STR,
        _HEADER,
        response=True,
        required=True,
        description="This request's id, also in the error body and the logs.",
    ),
    OpenApiParameter(
        "Fluxomail-Request-Id",
        _STR,
        _HEADER,
        response=True,
        required=True,
        description="Same value as X-Request-Id (read by the JavaScript SDK).",
    ),
    OpenApiParameter(
        "Fluxomail-Version",
        {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        _HEADER,
        description=(
            "API version date, e.g. 2025-09-01 (one version today): the newest version released "
            "on or before it answers; not a date: 400."
        ),
    ),
]

_RATE_LIMIT_CODES = [200, 429]
SEND_HEADERS = [
    OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
        _HEADER,
        description=(
            "Unique per logical request. A repeat with the same body returns the first result "
            "for 24 hours; with a different body it is a 422; while the first still runs, a 409."
        ),
    ),
    OpenApiParameter(
        "Idempotency-Key",
        _STR,
        _HEADER,
        response=True,
        description="Echo of the idempotency key used, when one was given.",
    ),
    OpenApiParameter(
        "Fluxomail-Version",
        _STR,
        _HEADER,
        response=True,
        description="The API version that answered (2025-09-01).",
    ),
    OpenApiParameter(
        "Idempotency-Replayed",
        {"type": "string", "enum": ["true"]},
        _HEADER,
        response=[200],
        description="Present on a replayed result.",
    ),
    OpenApiParameter(
        "X-RateLimit-Limit", _DIGITS, _HEADER, response=_RATE_LIMIT_CODES, description="Cap."
    ),
    OpenApiParameter(
        "X-RateLimit-Remaining",
        _DIGITS,
        _HEADER,
        response=_RATE_LIMIT_CODES,
        description="Requests left in this minute.",
    ),
    OpenApiParameter(
        "X-RateLimit-Reset",
        _DIGITS,
        _HEADER,
        response=_RATE_LIMIT_CODES,
        description="UTC epoch seconds when the window resets.",
    ),
    OpenApiParameter(
        "RateLimit-Policy",
        _STR,
        _HEADER,
        response=_RATE_LIMIT_CODES,
        description='IETF draft: `"per-minute";q=<cap>;w=60`.',
    ),
    OpenApiParameter(
        "RateLimit",
        _STR,
        _HEADER,
        response=_RATE_LIMIT_CODES,
        description='IETF draft: `"per-minute";r=<remaining>;t=<seconds>`.',
    ),
    OpenApiParameter(
        "Retry-After",
        _DIGITS,
        _HEADER,
        response=[409, 429, 503],
        description="Whole seconds to wait before retrying.",
    ),
]

_AUTH_HEADER = OpenApiParameter(
    "WWW-Authenticate",
    {"type": "string", "enum": ["Bearer"]},
    _HEADER,
    response=[401],
    required=True,
)


def problem(description: str, code: str) -> OpenApiResponse:
    return OpenApiResponse(
        ProblemSerializer,
        description=f"{description} (code `{code}`).",
    )


AUTH_ERRORS = {
    401: problem("Missing, malformed, unknown, revoked or expired key", "invalid_key"),
    403: problem("Missing scope or paused organization", "missing_scope / tenant_paused"),
    406: problem("The Accept header excludes JSON", "not_acceptable"),
    500: problem("Internal error; names the sendId when a send was created", "internal_error"),
}

SEND_RESPONSES = {
    200: OpenApiResponse(
        SendEmailResultSerializer,
        description="Sent, or the first result replayed (`reused: true`).",
        examples=[
            OpenApiExample(
                "sent",
                {
                    "sendId": "sends_01jabcdef0123456789abcdefg",
                    "status": "sent",
                    "messageId": "<175.1@fluxomail.local>",
                    "reused": False,
                },
            )
        ],
    ),
    400: problem(
        "Malformed JSON, a body that is not UTF-8, nested deeper than 32 levels or of more than "
        "1000 values, or invalid fields (each one named in details)",
        "validation_error",
    ),
    **AUTH_ERRORS,
    409: problem("A request with this idempotency key is still running", "idempotency_in_progress"),
    411: problem(
        "A chunked body without Content-Length behind a server that does not de-chunk it "
        "(gunicorn does)",
        "length_required",
    ),
    413: problem("Request body too large", "payload_too_large"),
    415: problem("The body is not JSON, or its charset is not UTF-8", "unsupported_media_type"),
    422: problem("Idempotency key reused with a different body", "idempotency_key_reused"),
    429: problem("Per-minute cap reached (see Retry-After)", "rate_limited"),
    503: problem(
        "A dependency is down (the database; Redis when rate limits fail closed)",
        "service_unavailable",
    ),
}

READ_RESPONSES = {
    **AUTH_ERRORS,
    400: problem("Invalid filter or cursor", "validation_error"),
    404: problem("No such send in your organization", "not_found"),
    503: problem("The database is unavailable", "service_unavailable"),
}

EVENT_RESPONSES = {
    **AUTH_ERRORS,
    400: problem("Invalid parameter (named in details)", "validation_error"),
    503: problem("The database is unavailable", "service_unavailable"),
}

_MOMENT = {
    "anyOf": [
        {"type": "string", "format": "date-time", "maxLength": timeline.DATE_PARAM_MAX_LENGTH},
        {"type": "string", "pattern": "^[0-9]{1,15}$", "description": "Epoch milliseconds."},
    ]
}

_DAY_OR_TIME = {
    "anyOf": [
        {"type": "string", "format": "date", "maxLength": timeline.DATE_PARAM_MAX_LENGTH},
        {"type": "string", "format": "date-time", "maxLength": timeline.DATE_PARAM_MAX_LENGTH},
    ]
}
_QUERY = OpenApiParameter.QUERY
EVENT_FILTERS = [
    OpenApiParameter(
        "types",
        {
            "type": "array",
            "maxItems": event_api.MAX_TYPES,
            "items": {"type": "string", "enum": [*events.ALL_TYPES, events.WILDCARD]},
        },
        _QUERY,
        explode=True,
        description="Repeatable; `email.*` matches every type.",
    ),
    OpenApiParameter(
        "since",
        {
            "anyOf": [
                {"type": "string", "pattern": "^evt_[0-9a-z]{26}$"},
                {"type": "string", "format": "date-time", "maxLength": 40},
                {"type": "string", "pattern": "^[0-9]{1,15}$"},
            ]
        },
        _QUERY,
        description="Only events after this event id, or recorded at or after this time.",
    ),
    OpenApiParameter(
        "domain", {"type": "string", "maxLength": 255}, _QUERY, description="Recipient domain."
    ),
    OpenApiParameter("smtpCode", {"type": "integer", "minimum": 100, "maximum": 599}, _QUERY),
    OpenApiParameter("mtaHost", {"type": "string", "maxLength": 255}, _QUERY),
]

LIST_PARAMETERS = [
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, _QUERY
    ),
    OpenApiParameter("cursor", {"type": "string", "maxLength": timeline.CURSOR_MAX_LENGTH}, _QUERY),
    OpenApiParameter("status", {"type": "string", "enum": SEND_STATUSES}, _QUERY),
    OpenApiParameter("endpoint", {"type": "string", "enum": ["send", "send-global"]}, _QUERY),
    OpenApiParameter(
        "to",
        {"type": "string", "maxLength": timeline.TO_FILTER_MAX_LENGTH},
        _QUERY,
        description="Part of the recipient.",
    ),
    OpenApiParameter("from", _DAY_OR_TIME, _QUERY, description="Created at or after (UTC)."),
    OpenApiParameter(
        "until",
        _DAY_OR_TIME,
        _QUERY,
        description="Created before; a bare date includes it (`9999-12-31`: no end).",
    ),
]

_SEND_DESCRIPTION = (
    "Sends one email. Checks run in this order: key (401), scope (403), paused organization "
    "(403), JSON (400/411/413/415), idempotency replay or conflict (200/422/409), rate limit "
    "(429), validation (400), send. Idempotency keys are scoped to the organization and kept "
    "24 hours."
)


def _with_media_types(responses: dict) -> dict:
    """Successes are application/json; errors either media type, as the client's Accept asks."""
    return {
        (code, media_type): response
        for code, response in sorted(responses.items())
        for media_type in (ERROR_CONTENT_TYPES if code >= 400 else (JSON_CONTENT_TYPE,))
    }


def _send_schema(summary: str):
    return extend_schema(
        summary=summary,
        description=_SEND_DESCRIPTION,
        request={"application/json": SendEmailRequestSerializer},
        examples=[
            OpenApiExample(
                "seed",
                {
                    "to": "user@example.com",
                    "subject": "Hello",
                    "content": "Hi there",
                    "htmlContent": "<p>Hi there</p>",
                },
                request_only=True,
            )
        ],
        responses=_with_media_types(SEND_RESPONSES),
        parameters=REQUEST_ID_HEADERS + SEND_HEADERS + [_AUTH_HEADER],
        tags=["Sending"],
    )


def _annotate() -> None:
    """Attaches the documentation to the API views (once, at import)."""
    extend_schema_view(post=_send_schema("Send an email"))(views.SendEmailView)
    extend_schema_view(
        get=extend_schema(
            summary="List sends",
            operation_id="sends_list",
            description="The organization's sends, newest first, in pages of `limit`.",
            responses=_with_media_types({200: SendPageSerializer, **READ_RESPONSES}),
            parameters=LIST_PARAMETERS + REQUEST_ID_HEADERS + [_AUTH_HEADER],
            tags=["Sends"],
        )
    )(timeline.SendListView)
    extend_schema_view(
        get=extend_schema(
            summary="A send's timeline",
            operation_id="sends_retrieve",
            description=(
                "The send, its delivery attempts and its events newest first, in pages of "
                "`limit`; `opens` and `clicks` summarise the whole send."
            ),
            responses=_with_media_types({200: SendTimelineSerializer, **READ_RESPONSES}),
            parameters=[
                OpenApiParameter(
                    "send_id",
                    {"type": "string", "pattern": "^sends_[0-9a-z]{26}$"},
                    OpenApiParameter.PATH,
                ),
                OpenApiParameter(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
                    _QUERY,
                ),
                OpenApiParameter(
                    "cursor", _MOMENT, _QUERY, description="Events older than this moment."
                ),
            ]
            + REQUEST_ID_HEADERS
            + [_AUTH_HEADER],
            tags=["Sends"],
        )
    )(timeline.SendDetailView)
    extend_schema_view(
        get=extend_schema(
            summary="List events",
            operation_id="events_list",
            description=(
                "The organization's events (SPEC section 7), newest first, in pages of `limit`. "
                "`cursor` pages to older events, `since` bounds them from below."
            ),
            responses=_with_media_types({200: EventPageSerializer, **EVENT_RESPONSES}),
            parameters=EVENT_FILTERS
            + [
                OpenApiParameter(
                    "limit",
                    {"type": "integer", "minimum": 0, "maximum": 100, "default": 50},
                    _QUERY,
                ),
                OpenApiParameter(
                    "cursor", {"type": "string", "maxLength": timeline.CURSOR_MAX_LENGTH}, _QUERY
                ),
            ]
            + REQUEST_ID_HEADERS
            + [_AUTH_HEADER],
            tags=["Events"],
        )
    )(event_api.EventListView)
    extend_schema_view(
        get=extend_schema(
            summary="Delivery and engagement metrics",
            operation_id="metrics_retrieve",
            description=(
                "Counts and rates over a window, from counters kept as events arrive (never a "
                "scan of sends). Rates are fractions of totalSent; click-to-open is unique "
                "clicks over unique opens; machine opens are left out of opens."
            ),
            responses=_with_media_types({200: MetricsSerializer, **EVENT_RESPONSES}),
            parameters=[
                OpenApiParameter(
                    "window",
                    {"type": "string", "enum": ["24h", "7d", "30d", "all"], "default": "24h"},
                    _QUERY,
                ),
                OpenApiParameter("since", _MOMENT, _QUERY, description="Overrides window."),
            ]
            + REQUEST_ID_HEADERS
            + [_AUTH_HEADER],
            tags=["Events"],
        )
    )(event_api.MetricsView)

    _annotate_recipients()


# The recipient's own token or a key: either key header, or none at all.
_RECIPIENT_OR_KEY = [{"bearerAuth": []}, {"apiKeyHeader": []}, {}]

PREFERENCES_RESPONSES = {
    **AUTH_ERRORS,
    400: problem("Invalid token, parameter or categoryKey (named in details)", "validation_error"),
    403: problem("Missing scope or paused organization (keys only)", "missing_scope"),
    404: problem("Unknown contact", "not_found"),
    503: problem("The database is unavailable", "service_unavailable"),
}


def _annotate_recipients() -> None:
    extend_schema_view(
        get=extend_schema(
            summary="A recipient's preferences",
            operation_id="preferences_retrieve",
            description=(
                "By `token` (the recipient's own, from an unsubscribe link; no key) or by "
                "`email` (a key with `preferences_read`). Exactly one of the two."
            ),
            auth=_RECIPIENT_OR_KEY,
            parameters=[
                # Bounded so that the request line stays under gunicorn's 8190 bytes even with
                # every character of `email` percent-encoded (4-byte UTF-8: 12 bytes each).
                OpenApiParameter(
                    "token",
                    {"type": "string", "maxLength": 1000, "pattern": "^[A-Za-z0-9_.:-]+$"},
                    _QUERY,
                ),
                OpenApiParameter("email", {"type": "string", "maxLength": 254}, _QUERY),
            ]
            + REQUEST_ID_HEADERS,
            responses=_with_media_types({200: PreferencesSerializer, **PREFERENCES_RESPONSES}),
            tags=["Recipients"],
        ),
        post=extend_schema(
            summary="Change a recipient's preferences",
            operation_id="preferences_update",
            description=(
                "By `token` (no key) or `email` (a key with `preferences_manage`). Turning a "
                "category or `subscribed` off puts the address on the suppression list for it; "
                "turning it on lifts only that unsubscribe, never a bounce or complaint."
            ),
            auth=_RECIPIENT_OR_KEY,
            request={"application/json": PreferencesUpdateSerializer},
            parameters=REQUEST_ID_HEADERS,
            responses=_with_media_types(
                {
                    200: OkSerializer,
                    **PREFERENCES_RESPONSES,
                    413: problem("Request body too large", "payload_too_large"),
                    415: problem("The body is not JSON", "unsupported_media_type"),
                }
            ),
            tags=["Recipients"],
        ),
    )(contacts_api.PreferencesView)
    sync_headers = [
        header for header in SEND_HEADERS if header.name in ("Idempotency-Key", "Retry-After")
    ] + [
        OpenApiParameter(
            "Idempotency-Replayed",
            {"type": "string", "enum": ["true"]},
            _HEADER,
            response=[200],
            description="Present on a replayed result.",
        )
    ]
    extend_schema_view(
        post=extend_schema(
            summary="Sync contacts",
            operation_id="contacts_sync",
            description=(
                "Up to 1,000 contacts a call. An `Idempotency-Key` header, or an `eventId` on "
                "every contact, is required. Rows are applied one by one: a bad row is reported "
                "in `errors`, a row older than the stored `sourceUpdatedAt` is skipped as "
                "stale, a repeated `eventId` as a duplicate; `deleted: true` deletes the "
                "contact. No sync lifts a hard-bounce or complaint suppression."
            ),
            request={"application/json": ContactsSyncRequestSerializer},
            parameters=REQUEST_ID_HEADERS + sync_headers + [_AUTH_HEADER],
            responses=_with_media_types(
                {
                    200: ContactsSyncResultSerializer,
                    **AUTH_ERRORS,
                    400: problem(
                        "Malformed body, too many or no contacts, no idempotency key",
                        "validation_error",
                    ),
                    409: problem(
                        "A request with this idempotency key is still running",
                        "idempotency_in_progress",
                    ),
                    413: problem("Request body too large", "payload_too_large"),
                    415: problem("The body is not JSON", "unsupported_media_type"),
                    422: problem(
                        "Idempotency key reused with a different body", "idempotency_key_reused"
                    ),
                    503: problem("The database is unavailable", "service_unavailable"),
                }
            ),
            tags=["Recipients"],
        )
    )(contacts_api.ContactsSyncView)
    extend_schema_view(
        get=extend_schema(
            summary="Stream events",
            operation_id="events_stream",
            description=(
                "Server-Sent Events of the organization's new events, as envelopes: each is "
                "`id: <event id>` and `data: <envelope JSON>` then a blank line, with no "
                "`event:` line; `: ping` comments keep the connection open; `retry: 2000` "
                "comes first. With `since` or `Last-Event-ID` (which wins), every matching "
                "event after it comes first, oldest first, then the live ones. Credentials "
                "are checked before the stream starts (401/403/400 as problems)."
            ),
            responses={
                (200, "text/event-stream"): OpenApiResponse(
                    # One event as an SSE parser reads it: `data` is the envelope's JSON.
                    {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string", "pattern": "^evt_[0-9a-z]{26}$"},
                            "data": {"type": "string"},
                            "event": {"type": "string"},
                            "retry": {"type": "integer"},
                        },
                    },
                    description="The stream (never ends by itself on an ASGI server).",
                ),
                **{
                    key: value
                    for key, value in _with_media_types(EVENT_RESPONSES).items()
                    if key[0] != 200
                },
            },
            parameters=EVENT_FILTERS
            + [
                OpenApiParameter(
                    "Last-Event-ID",
                    {"type": "string", "pattern": "^evt_[0-9a-z]{26}$"},
                    _HEADER,
                    description="Resume after this event (sent by EventSource on reconnect).",
                ),
                OpenApiParameter(
                    "Cache-Control",
                    {"type": "string", "enum": ["no-cache"]},
                    _HEADER,
                    response=[200],
                ),
                # DRF's renderer override, there only so that `Accept: text/event-stream`
                # is acceptable: not a parameter of this API.
                OpenApiParameter("format", exclude=True),
            ]
            + REQUEST_ID_HEADERS
            + [_AUTH_HEADER],
            tags=["Events"],
        )
    )(stream.EventStreamView)
    extend_schema_view(
        post=extend_schema(
            summary="Mint a short-lived token",
            operation_id="tokens_create",
            description=(
                "A token for a browser or other client that must not hold the API key: "
                "accepted on GET requests wherever its scopes allow (the event stream takes "
                "it as `?token=`), until `expiresAt` or until the key is revoked. Any valid "
                "key may mint one, with its own scopes or fewer (403 `missing_scope` else)."
            ),
            request={"application/json": TokenRequestSerializer},
            responses=_with_media_types(
                {
                    200: TokenSerializer,
                    400: problem("Invalid fields (each one named in details)", "validation_error"),
                    **AUTH_ERRORS,
                    413: problem("Request body too large", "payload_too_large"),
                    415: problem("The body is not JSON", "unsupported_media_type"),
                    503: problem("The database is unavailable", "service_unavailable"),
                }
            ),
            parameters=REQUEST_ID_HEADERS
            + [
                OpenApiParameter(
                    "Cache-Control",
                    {"type": "string", "enum": ["no-store"]},
                    _HEADER,
                    response=[200],
                    required=True,
                ),
                _AUTH_HEADER,
            ],
            tags=["Events"],
        )
    )(token_api.TokenView)


WEBHOOK_ERRORS = {
    **AUTH_ERRORS,
    404: problem("No such endpoint in your organization", "not_found"),
    503: problem("The database is unavailable", "service_unavailable"),
}
_WRITE_ERRORS = {
    **WEBHOOK_ERRORS,
    400: problem(
        "Invalid fields (each one named in details), a URL the SSRF guard refuses, "
        "or too many endpoints",
        "validation_error",
    ),
    415: problem("The body is not JSON", "unsupported_media_type"),
}
_ENDPOINT_ID = OpenApiParameter(
    "endpoint_id", {"type": "string", "pattern": "^whep_[0-9a-z]{26}$"}, OpenApiParameter.PATH
)
_WEBHOOK_DESCRIPTION = (
    "Each matching event is POSTed to the endpoint as its envelope, signed with "
    "`Fluxomail-Signature: sha256=<hex HMAC-SHA256 of the body>` and the Standard Webhooks "
    "headers `webhook-id`, `webhook-timestamp`, `webhook-signature`. Scope `webhooks_manage`."
)


def _annotate_webhooks() -> None:
    def schema(summary: str, operation_id: str, responses: dict, **kwargs):
        return extend_schema(
            summary=summary,
            operation_id=operation_id,
            description=_WEBHOOK_DESCRIPTION,
            responses=_with_media_types(responses),
            parameters=kwargs.pop("parameters", []) + REQUEST_ID_HEADERS + [_AUTH_HEADER],
            tags=["Webhooks"],
            **kwargs,
        )

    extend_schema_view(
        get=schema(
            "List webhook endpoints",
            "webhook_endpoints_list",
            {200: WebhookEndpointListSerializer, **AUTH_ERRORS, 503: WEBHOOK_ERRORS[503]},
        ),
        post=schema(
            "Create a webhook endpoint",
            "webhook_endpoints_create",
            {201: WebhookEndpointWithSecretSerializer, **_WRITE_ERRORS},
            request={"application/json": WebhookEndpointCreateSerializer},
        ),
    )(webhook_api.EndpointListView)
    extend_schema_view(
        get=schema(
            "A webhook endpoint",
            "webhook_endpoints_retrieve",
            {200: WebhookEndpointSerializer, **WEBHOOK_ERRORS},
            parameters=[_ENDPOINT_ID],
        ),
        patch=schema(
            "Change or rotate a webhook endpoint",
            "webhook_endpoints_update",
            {200: WebhookEndpointWithSecretSerializer, **_WRITE_ERRORS},
            request={"application/json": WebhookEndpointUpdateSerializer},
            parameters=[_ENDPOINT_ID],
        ),
        delete=schema(
            "Delete a webhook endpoint",
            "webhook_endpoints_destroy",
            {204: None, **WEBHOOK_ERRORS},
            parameters=[_ENDPOINT_ID],
        ),
    )(webhook_api.EndpointDetailView)
    extend_schema_view(
        post=schema(
            "Send a test event",
            "webhook_endpoints_test",
            {202: WebhookTestSerializer, **WEBHOOK_ERRORS},
            request=None,
            parameters=[_ENDPOINT_ID],
        ),
    )(webhook_api.EndpointTestView)


_annotate()
_annotate_webhooks()


# -- serving ----------------------------------------------------------------------------------


SEND_GLOBAL_SUMMARY = "Send an email (global endpoint)"
SEND_GLOBAL_NOTE = (
    " Same request, checks and answers as `/api/v1/emails/send`; a send through this path also "
    'counts in the `global_endpoint_sends` usage metric ("Sends through send-global").'
)


def describe_send_global(result: dict, **kwargs) -> dict:
    """Postprocessing hook: one view serves both send paths; send-global says what it adds."""
    operation = result["paths"].get("/api/v1/emails/send-global", {}).get("post")
    if operation is not None:
        operation["summary"] = SEND_GLOBAL_SUMMARY
        operation["description"] = _SEND_DESCRIPTION + SEND_GLOBAL_NOTE
    return result


def document_version_errors(result: dict, **kwargs) -> dict:
    """Postprocessing hook: every versioned operation may answer 400 for a Fluxomail-Version
    that is not a date (fluxomail.versioning), even one that takes no other input."""
    for operations in result["paths"].values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "400" in responses:
                continue
            schema = {"schema": {"$ref": "#/components/schemas/Problem"}}
            responses["400"] = {
                "content": {media_type: dict(schema) for media_type in ERROR_CONTENT_TYPES},
                "description": "A Fluxomail-Version that is not a date (code `validation_error`).",
            }
            operation["responses"] = dict(sorted(responses.items()))
    return result


class OpenApiDocumentView(SpectacularJSONAPIView):
    """The document itself: public, like any API reference page."""

    authentication_classes: list = []
    permission_classes = [AllowAny]


class OpenApiDocsView(SpectacularSwaggerView):
    """Swagger UI with its assets from drf-spectacular-sidecar (served by whitenoise, no CDN).

    Its script is ours (templates/openapi/swagger_ui.js): "Try it out" fills in a fresh
    Idempotency-Key on a send and never adds a CSRF header (the API authenticates by key only).
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    url_name = "openapi-document"
    template_name_js = "openapi/swagger_ui.js"


urlpatterns = [
    path("openapi.json", OpenApiDocumentView.as_view(), name="openapi-document"),
    path("docs", OpenApiDocsView.as_view(), name="openapi-docs"),
    path("docs/", RedirectView.as_view(pattern_name="openapi-docs", permanent=True)),
]
