"""GET /api/v1/events (the event log, newest first) and GET /api/v1/metrics (SPEC.md 7 and 9).

Every events query is an index range scan on one of the (organization, …, public_id) indexes
of Event: ids sort by the time an event was recorded, so `cursor` ("older than") and `since`
("newer than") are bounds on the id, and no query reads more rows than the page it returns
(with a filter, rows of the filter's index only; several types are one scan per type,
page_of_events). Two filters together read the rows of one filter's index until the page is
full.
"""

import heapq
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import islice
from operator import attrgetter

from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization, Scope
from fluxomail.ids import first_id_at
from sends.events import ALL_TYPES, WILDCARD, envelope, expand_types, iso, metrics, parse_moment
from sends.models import Event
from sends.timeline import CURSOR_MAX_LENGTH, MomentField, decode_cursor, encode_cursor

EVENT_ID = re.compile(r"^evt_[0-9a-z]{26}$")
MAX_TYPES = 20


class TypesField(serializers.ListField):
    """`types`, repeatable or comma-separated: event types or the wildcard `email.*`."""

    child = serializers.ChoiceField(choices=(*ALL_TYPES, WILDCARD))

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_TYPES, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list) and len(data) > MAX_TYPES:
            self.fail("max_length", max_length=MAX_TYPES)
        values = [part.strip() for value in data for part in str(value).split(",")]
        return super().to_internal_value([value for value in values if value])


class SinceField(serializers.Field):
    """`since`: an event id (events after it), or an ISO 8601 time or epoch ms (events recorded
    at or after it). Internally: the lowest id to return, and whether it is itself excluded."""

    default_error_messages = {
        "invalid": "Must be an event id, an ISO 8601 date-time or epoch milliseconds."
    }

    def to_internal_value(self, data) -> tuple[str, bool]:
        if not isinstance(data, str) or len(data) > 40:
            self.fail("invalid")
        value = data.strip()
        if EVENT_ID.match(value):
            return value, True
        moment = parse_moment(value)
        if moment is None:
            self.fail("invalid")
        return first_id_at("evt", moment), False

    def to_representation(self, value):
        return value[0]


class EventFilters(serializers.Serializer):
    """The filters shared by the events list and the stream."""

    types = TypesField(required=False)
    since = SinceField(required=False)
    domain = serializers.CharField(required=False, max_length=255)
    smtpCode = serializers.IntegerField(required=False, min_value=100, max_value=599)
    mtaHost = serializers.CharField(required=False, max_length=255)

    @classmethod
    def from_query(cls, query_params, **kwargs) -> "EventFilters":
        data = {name: value for name, value in query_params.items() if name != "types"}
        if "types" in query_params:
            data["types"] = query_params.getlist("types")
        return cls(data=data, **kwargs)

    def validated(self) -> dict:
        if not self.is_valid():
            raise serializers.ValidationError(self.errors)
        return self.validated_data


def _columns(params: dict) -> dict:
    """The equality filters of `params` (EventFilters' validated data) by column, with each
    value as the column stores it."""
    columns = {}
    if "domain" in params:
        columns["recipient_domain"] = params["domain"].strip().lower()
    if "smtpCode" in params:
        columns["smtp_code"] = params["smtpCode"]
    if "mtaHost" in params:
        columns["mta_host"] = params["mtaHost"]
    return columns


def filter_events(organization: Organization, params: dict):
    """The organization's events that match `params` (EventFilters' validated data)."""
    events = Event.objects.for_org(organization)
    types = expand_types(params.get("types", []))
    if types is not None:
        events = events.filter(type__in=types)
    if "since" in params:
        bound, exclusive = params["since"]
        events = events.filter(**{"public_id__gt" if exclusive else "public_id__gte": bound})
    return events.filter(**_columns(params)).select_related("send", "message")


def page_of_events(
    organization: Organization, params: dict, *, limit: int, newest_first: bool, **bounds
) -> list[Event]:
    """Up to `limit` events that match `params` and `bounds` (public_id lookups), in id order.

    With several types (not all), one query per type, each a range scan of event_org_type, and
    the pages merged: `type IN (…)` cannot come ordered by id from any index, so PostgreSQL
    would read every event of those types and sort them, more as the table grows.
    """
    order = "-public_id" if newest_first else "public_id"
    types = expand_types(params.get("types", []))
    if types is None or len(types) == 1:
        return list(filter_events(organization, params).filter(**bounds).order_by(order)[:limit])
    events = filter_events(organization, {**params, "types": []}).filter(**bounds)
    pages = [list(events.filter(type=kind).order_by(order)[:limit]) for kind in types]
    merged = heapq.merge(*pages, key=attrgetter("public_id"), reverse=newest_first)
    return list(islice(merged, limit))


def event_matcher(params: dict) -> Callable[[Event], bool]:
    """filter_events' filters (but `since`) for one event in memory: the stream's live events,
    which one poll reads for every subscriber at once."""
    types = expand_types(params.get("types", []))
    columns = _columns(params)

    def matches(event: Event) -> bool:
        if types is not None and event.type not in types:
            return False
        return all(getattr(event, column) == value for column, value in columns.items())

    return matches


class EventListQuery(EventFilters):
    limit = serializers.IntegerField(min_value=0, max_value=100, default=50)
    cursor = serializers.CharField(required=False, max_length=CURSOR_MAX_LENGTH)

    def validate_cursor(self, value: str) -> str:
        public_id = decode_cursor(value, EVENT_ID)
        if public_id is None:
            raise serializers.ValidationError("Invalid cursor.")
        return public_id


class EventListView(APIView):
    """GET /api/v1/events: the organization's events, newest first, in pages of `limit`."""

    required_scopes = (Scope.READ_SENDS,)

    def get(self, request: Request) -> Response:
        params = EventListQuery.from_query(request.query_params).validated()
        limit = params["limit"]
        if limit == 0:
            return Response({"events": [], "nextCursor": None})
        bounds = {"public_id__lt": params["cursor"]} if "cursor" in params else {}
        page = page_of_events(
            request.user.organization, params, limit=limit + 1, newest_first=True, **bounds
        )
        next_cursor = encode_cursor(page[limit - 1].public_id) if len(page) > limit else None
        return Response(
            {"events": [envelope(event) for event in page[:limit]], "nextCursor": next_cursor}
        )


WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class MetricsQuery(serializers.Serializer):
    window = serializers.ChoiceField(choices=[*WINDOWS, "all"], default="24h")
    since = MomentField(required=False)


class MetricsView(APIView):
    """GET /api/v1/metrics: sums of the hourly EventCounter rows in the window; the cost
    depends on the window's hours, never on the number of sends or events."""

    required_scopes = (Scope.READ_SENDS,)

    def get(self, request: Request) -> Response:
        query = MetricsQuery(data=request.query_params.dict())
        if not query.is_valid():
            raise serializers.ValidationError(query.errors)
        params = query.validated_data
        now = timezone.now()
        preset = params["window"]
        since: datetime | None
        if "since" in params:
            preset, since = None, params["since"]
        elif preset == "all":
            since = None
        else:
            since = now - WINDOWS[preset]
        totals = metrics(request.user.organization, since)
        return Response(
            {
                "window": {"preset": preset, "since": iso(since), "until": iso(now)},
                "scanned": {"sends": totals["totalSent"], "sendScanLimit": None},
                "metrics": totals,
            }
        )
