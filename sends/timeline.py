"""GET /api/v1/sends (the list) and GET /api/v1/sends/{id} (one send's timeline)."""

import base64
import binascii
import re
from datetime import UTC, datetime, time, timedelta

from django.db.models import Count, Max, Min, Q
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils import humanize_datetime
from rest_framework.views import APIView

from accounts.models import Scope
from fluxomail.api import NotFound
from sends.events import envelope, iso, parse_moment
from sends.models import Event, Send

SEND_ID = re.compile(r"^sends_[0-9a-z]{26}$")

# Bounds of the list's query parameters (also in its OpenAPI document): a cursor is 43
# characters, an ISO 8601 date-time at most 32; together they keep the request line short.
CURSOR_MAX_LENGTH = 64
TO_FILTER_MAX_LENGTH = 320
DATE_PARAM_MAX_LENGTH = 40


def send_json(send: Send) -> dict:
    return {
        "id": send.public_id,
        "to": send.to,
        "subject": send.subject,
        "status": send.status,
        "policy": send.policy_key,
        "endpoint": send.endpoint,
        "idempotencyKey": send.idempotency_key,
        "requestId": send.request_id or None,
        "metadata": send.metadata,
        "createdAt": iso(send.created_at),
        "updatedAt": iso(send.updated_at),
    }


def message_json(message) -> dict:
    return {
        "provider": message.provider,
        "from": message.from_email,
        "to": message.to,
        "providerMessageId": message.provider_message_id or None,
        "feedbackId": message.feedback_id or None,
        "error": message.error or None,
        "createdAt": iso(message.created_at),
        "bodyPurgedAt": iso(message.body_purged_at),
    }


def _summaries(send: Send) -> dict:
    """Opens and clicks of the whole send (not only the page shown): one aggregate query."""
    aggregates = {}
    for name, kind in (("opens", Event.Type.OPENED), ("clicks", Event.Type.CLICKED)):
        of_kind = Q(type=kind)
        aggregates |= {
            f"{name}_count": Count("id", filter=of_kind),
            f"{name}_machine": Count("id", filter=of_kind & Q(data__machine=True)),
            f"{name}_first": Min("occurred_at", filter=of_kind),
            f"{name}_last": Max("occurred_at", filter=of_kind),
        }
    row = Event.objects.filter(send=send).aggregate(**aggregates)
    return {
        name: {
            "count": row[f"{name}_count"],
            "machineCount": row[f"{name}_machine"],
            "firstAt": iso(row[f"{name}_first"]),
            "lastAt": iso(row[f"{name}_last"]),
        }
        for name in ("opens", "clicks")
    }


class MomentField(serializers.Field):
    """A moment as an ISO 8601 date-time (no offset: UTC) or epoch milliseconds."""

    default_error_messages = {"invalid": "Must be an ISO 8601 date-time or epoch milliseconds."}

    def to_internal_value(self, data) -> datetime:
        moment = None
        if isinstance(data, str) and len(data) <= DATE_PARAM_MAX_LENGTH:
            moment = parse_moment(data.strip())
        if moment is None:
            self.fail("invalid")
        return moment

    def to_representation(self, value):
        return iso(value)


class TimelineQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=100)
    cursor = MomentField(required=False)


class SendDetailView(APIView):
    """GET /api/v1/sends/{id}: the send, its delivery attempts, and its events newest first.

    `cursor` (epoch ms or ISO 8601) pages to older events; `nextCursor` is the time of the
    page's last event, to the microsecond.
    """

    required_scopes = (Scope.READ_SENDS,)

    def get(self, request: Request, send_id: str) -> Response:
        query = TimelineQuery(data=request.query_params.dict())
        if not query.is_valid():
            raise serializers.ValidationError(query.errors)
        params = query.validated_data
        if not SEND_ID.match(send_id):
            raise NotFound()
        send = Send.objects.for_org(request.user.organization).filter(public_id=send_id).first()
        if send is None:
            raise NotFound()
        messages = list(send.messages.order_by("created_at", "id"))
        page = send.events.select_related("message").order_by("-occurred_at", "-id")
        if "cursor" in params:
            page = page.filter(occurred_at__lt=params["cursor"])
        limit = params["limit"]
        page = list(page[: limit + 1])
        next_cursor = None
        if len(page) > limit:
            page = page[:limit]
            last = page[-1].occurred_at.astimezone(UTC)
            next_cursor = last.isoformat(timespec="microseconds").replace("+00:00", "Z")
        for event in page:
            event.send = send
        return Response(
            {
                "send": send_json(send),
                "messages": [message_json(message) for message in messages],
                "events": [envelope(event) for event in page],
                "nextCursor": next_cursor,
                **_summaries(send),
            }
        )


def encode_cursor(public_id: str) -> str:
    return base64.urlsafe_b64encode(public_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, pattern: re.Pattern = SEND_ID) -> str | None:
    """The id a cursor stands for, when it is one that `pattern` matches."""
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    return value if pattern.match(value) else None


class FlexibleDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date or date-time; a bare date is midnight UTC, times without offset UTC."""

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str) and len(value) > DATE_PARAM_MAX_LENGTH:
            # The same answer as any other malformed value, without parsing a long one.
            formats = getattr(self, "input_formats", None) or api_settings.DATETIME_INPUT_FORMATS
            self.fail("invalid", format=humanize_datetime.datetime_formats(formats))
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = serializers.DateField().to_internal_value(value)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            if not self.end_of_day:
                return moment
            # `until=2026-11-24` includes that whole day. `until=9999-12-31` (a common "no end")
            # has no next day: the last representable moment bounds it instead.
            try:
                return moment + timedelta(days=1)
            except OverflowError:
                return datetime.max.replace(tzinfo=UTC)
        moment = super().to_internal_value(value)
        return moment.astimezone(UTC)


class SendListQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    cursor = serializers.CharField(required=False, max_length=CURSOR_MAX_LENGTH)
    status = serializers.ChoiceField(choices=Send.Status.choices, required=False)
    endpoint = serializers.ChoiceField(choices=Send.Endpoint.choices, required=False)
    to = serializers.CharField(required=False, max_length=TO_FILTER_MAX_LENGTH)
    # `from` is a Python keyword, hence the source rename.
    from_ = FlexibleDateTimeField(required=False)
    until = FlexibleDateTimeField(required=False, end_of_day=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate_cursor(self, value: str) -> str:
        public_id = decode_cursor(value)
        if public_id is None:
            raise serializers.ValidationError("Invalid cursor.")
        return public_id

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("from"), attrs.get("until")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"until": ["Must be after from."]})
        return attrs


class SendListView(APIView):
    """GET /api/v1/sends: the organization's sends, newest first, in pages of `limit`.

    The cursor is the last id of the page: ids sort by creation time, so the next page is
    "ids below the cursor". Sends created while a client pages have higher ids and never shift
    or repeat the pages still to come.
    """

    required_scopes = (Scope.READ_SENDS,)

    def get(self, request: Request) -> Response:
        query = SendListQuery(data=request.query_params.dict())
        if not query.is_valid():
            raise serializers.ValidationError(query.errors)
        params = query.validated_data
        sends = Send.objects.for_org(request.user.organization)
        if "cursor" in params:
            sends = sends.filter(public_id__lt=params["cursor"])
        if "status" in params:
            sends = sends.filter(status=params["status"])
        if "endpoint" in params:
            sends = sends.filter(endpoint=params["endpoint"])
        if "to" in params:
            sends = sends.filter(to__icontains=params["to"])
        if "from" in params:
            sends = sends.filter(created_at__gte=params["from"])
        if "until" in params:
            sends = sends.filter(created_at__lt=params["until"])
        limit = params["limit"]
        page = list(sends.order_by("-public_id")[: limit + 1])
        next_cursor = encode_cursor(page[limit - 1].public_id) if len(page) > limit else None
        return Response(
            {"data": [send_json(send) for send in page[:limit]], "nextCursor": next_cursor}
        )
