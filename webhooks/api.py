"""The webhook endpoints API (SPEC.md section 11), scope `webhooks_manage`.

GET/POST /api/v1/webhook-endpoints, GET/PATCH/DELETE /api/v1/webhook-endpoints/{id},
POST /api/v1/webhook-endpoints/{id}/test. The secret is in the answer to the creation and to a
rotation (`PATCH {"rotateSecret": true}`) only.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from fluxomail.api import NotFound, ValidationFailed
from sends.events import ALL_TYPES, WILDCARD, iso
from sends.serializers import StrictCharField, StrictSerializer
from webhooks import delivery, signing, targets
from webhooks.models import Delivery, Endpoint

ENDPOINT_ID = re.compile(r"^whep_[0-9a-z]{26}$")
MAX_EVENT_TYPES = 20


class UrlField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=2000, **kwargs)

    def to_internal_value(self, data) -> str:
        url = super().to_internal_value(data)
        try:
            targets.check_new_url(url)
        except targets.UnsafeTarget as exc:
            raise serializers.ValidationError(str(exc)) from None
        return url


class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=(*ALL_TYPES, WILDCARD))

    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=MAX_EVENT_TYPES, **kwargs)

    def to_internal_value(self, data):
        return sorted(set(super().to_internal_value(data)))


class EndpointCreate(StrictSerializer):
    url = UrlField()
    eventTypes = EventTypesField(required=False, default=[WILDCARD])  # noqa: N815
    enabled = serializers.BooleanField(required=False, default=True)


class EndpointUpdate(StrictSerializer):
    url = UrlField(required=False)
    eventTypes = EventTypesField(required=False)  # noqa: N815
    enabled = serializers.BooleanField(required=False)
    rotateSecret = serializers.BooleanField(required=False, default=False)  # noqa: N815


def represent(endpoint: Endpoint, *, with_secret: bool = False) -> dict:
    body = {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "eventTypes": endpoint.event_types,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason or None,
        "createdAt": iso(endpoint.created_at),
        "updatedAt": iso(endpoint.updated_at),
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body


def represent_delivery(item: Delivery) -> dict:
    return {
        "id": item.public_id,
        "eventId": item.message_id,
        "eventType": item.event_type,
        "status": item.status,
        "attempts": item.attempts,
        "nextAttemptAt": iso(item.next_attempt_at),
        "createdAt": iso(item.created_at),
    }


def _valid(serializer_class, request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise ValidationFailed(
            "The body must be a JSON object", details={"body": ["Expected a JSON object."]}
        )
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def create_endpoint(organization, *, url: str, event_types: list[str], enabled: bool) -> Endpoint:
    """A new endpoint of `organization`, at most WEBHOOK_MAX_ENDPOINTS of them."""
    if Endpoint.objects.for_org(organization).count() >= settings.WEBHOOK_MAX_ENDPOINTS:
        limit = settings.WEBHOOK_MAX_ENDPOINTS
        raise ValidationFailed(
            f"At most {limit} webhook endpoints per organization",
            details={"url": [f"Delete an endpoint first: at most {limit} are allowed."]},
        )
    endpoint = Endpoint(
        organization=organization, url=url, event_types=event_types, enabled=enabled
    )
    endpoint.save(force_insert=True)
    return endpoint


def rotate_secret(endpoint: Endpoint) -> None:
    """A new secret; the current one keeps signing for WEBHOOK_SECRET_OVERLAP_HOURS."""
    now = timezone.now()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(
        hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS
    )
    endpoint.secret = signing.new_secret()


def set_enabled(endpoint: Endpoint, enabled: bool) -> None:
    if enabled and not endpoint.enabled:
        # Switched on again by hand: the failure count and the reason start afresh.
        endpoint.consecutive_failures = 0
        endpoint.disabled_reason = ""
    endpoint.enabled = enabled


def _endpoint(request: Request, endpoint_id: str) -> Endpoint:
    if not ENDPOINT_ID.match(endpoint_id):
        raise NotFound()
    endpoint = (
        Endpoint.objects.for_org(request.user.organization).filter(public_id=endpoint_id).first()
    )
    if endpoint is None:
        raise NotFound()
    return endpoint


class EndpointListView(APIView):
    required_scopes = (Scope.WEBHOOKS_MANAGE,)

    def get(self, request: Request) -> Response:
        endpoints = Endpoint.objects.for_org(request.user.organization).order_by("public_id")
        return Response({"data": [represent(endpoint) for endpoint in endpoints]})

    def post(self, request: Request) -> Response:
        data = _valid(EndpointCreate, request)
        endpoint = create_endpoint(
            request.user.organization,
            url=data["url"],
            event_types=data["eventTypes"],
            enabled=data["enabled"],
        )
        return Response(represent(endpoint, with_secret=True), status=201)


class EndpointDetailView(APIView):
    required_scopes = (Scope.WEBHOOKS_MANAGE,)

    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(represent(_endpoint(request, endpoint_id)))

    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        data = _valid(EndpointUpdate, request)
        if "url" in data:
            endpoint.url = data["url"]
        if "eventTypes" in data:
            endpoint.event_types = data["eventTypes"]
        if "enabled" in data:
            set_enabled(endpoint, data["enabled"])
        if data["rotateSecret"]:
            rotate_secret(endpoint)
        endpoint.updated_at = timezone.now()
        endpoint.save()
        return Response(represent(endpoint, with_secret=data["rotateSecret"]))

    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        endpoint.delete()
        return Response(status=204)


class EndpointTestView(APIView):
    required_scopes = (Scope.WEBHOOKS_MANAGE,)

    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        item = delivery.send_test(endpoint)
        return Response({"delivery": represent_delivery(item)}, status=202)
