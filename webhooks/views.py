"""The dashboard's webhook pages: endpoints (create with the secret shown once, rotate, switch on
or off, send a test event, delete) and each endpoint's delivery log with redelivery and the
reason it was disabled. Owners and admins change things; members look."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fluxomail.api import ValidationFailed
from usage.views import dashboard_view
from webhooks import api, delivery
from webhooks.forms import EndpointCreateForm
from webhooks.models import Delivery, Endpoint

LOG_SIZE = 50
ACTIONS = ("rotate", "test", "enable", "disable", "delete")


def _require_manager(request: HttpRequest) -> None:
    if not request.membership.can_manage_keys:
        raise PermissionDenied("Only owners and admins manage webhooks.")


@never_cache
@require_http_methods(["GET", "POST"])
@dashboard_view
def endpoints(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    form = EndpointCreateForm()
    created = None
    status = 200
    if request.method == "POST":
        _require_manager(request)
        form = EndpointCreateForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                created = api.create_endpoint(
                    organization,
                    url=form.cleaned_data["url"],
                    event_types=sorted(form.cleaned_data["event_types"]),
                    enabled=True,
                )
            except ValidationFailed as exc:
                form.add_error("url", exc.details["url"][0])
            else:
                # The secret lives only in this response: never in the session or a log.
                form, status = EndpointCreateForm(), 201
    context = {
        "nav": "webhooks",
        "endpoints": Endpoint.objects.for_org(organization).order_by("public_id"),
        "form": form,
        "created": created,
        "can_manage": request.membership.can_manage_keys,
    }
    return render(request, "dashboard/webhooks.html", context, status=status)


def _endpoint(request: HttpRequest, public_id: str) -> Endpoint:
    organization = request.membership.organization
    return get_object_or_404(Endpoint.objects.for_org(organization), public_id=public_id)


def _detail(request: HttpRequest, endpoint: Endpoint, new_secret: str | None = None):
    log = (
        Delivery.objects.filter(endpoint=endpoint)
        .prefetch_related("log")
        .order_by("-public_id")[:LOG_SIZE]
    )
    context = {
        "nav": "webhooks",
        "endpoint": endpoint,
        "deliveries": log,
        "can_manage": request.membership.can_manage_keys,
        "new_secret": new_secret,
        "log_days": settings.WEBHOOK_LOG_DAYS,
    }
    return render(request, "dashboard/webhook_detail.html", context)


@never_cache
@require_GET
@dashboard_view
def endpoint_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    return _detail(request, _endpoint(request, public_id))


@never_cache
@require_POST
@dashboard_view
def endpoint_action(request: HttpRequest, public_id: str, action: str) -> HttpResponse:
    endpoint = _endpoint(request, public_id)
    _require_manager(request)
    if action not in ACTIONS:
        raise Http404
    if action == "rotate":
        api.rotate_secret(endpoint)
        endpoint.save()
        return _detail(request, endpoint, new_secret=endpoint.secret)
    if action == "test":
        delivery.send_test(endpoint)
        messages.success(request, "A test event is on its way; reload to see the attempt.")
    elif action in ("enable", "disable"):
        api.set_enabled(endpoint, action == "enable")
        endpoint.save()
    elif action == "delete":
        endpoint.delete()
        messages.success(request, f"Deleted the endpoint {endpoint.url}.")
        return redirect("dashboard-webhooks")
    return redirect("dashboard-webhook", public_id=endpoint.public_id)


@require_POST
@dashboard_view
def redeliver(request: HttpRequest, public_id: str, delivery_id: str) -> HttpResponse:
    endpoint = _endpoint(request, public_id)
    _require_manager(request)
    item = get_object_or_404(Delivery, endpoint=endpoint, public_id=delivery_id)
    delivery.redeliver(item)
    messages.success(request, f"{item.public_id} is queued again.")
    return redirect("dashboard-webhook", public_id=endpoint.public_id)
