"""The account owners' dashboard: usage, API keys and recent sends of one organization.

Every page works on the organization picked in the session among the user's memberships, and
every query starts from that organization: another organization's key or send is a 404.
"""

import csv
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import ApiKey, Membership
from fluxomail.login_throttle import login_refusal
from fluxomail.security import dashboard_csp, preview_csp
from sends.events import envelope, metrics, sentence
from sends.models import Send
from sends.tracking import pixel_html
from usage import analytics, charts
from usage.forms import ApiKeyCreateForm, OrganizationPickForm, SendFilterForm

SESSION_ORG = "dashboard_organization"
USAGE_DAYS = (7, 30, 90)
USAGE_CHARTS = {
    "outcome": analytics.by_outcome,
    "endpoint": analytics.by_endpoint,
    "key": analytics.by_key,
}
SENDS_PER_PAGE = 50
# A mail's preview frame is short (CSS class preview-short) up to this size of its text part.
SHORT_PREVIEW_CHARS = 400
SHORT_PREVIEW_LINES = 6


@method_decorator(dashboard_csp, name="dispatch")
class LoginView(auth_views.LoginView):
    """Django's login, throttled per client address and per username (django-ratelimit)."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        refusal = login_refusal(request)
        if refusal is not None:
            # An unbound form: validating it would check the password, which is the very thing
            # the throttle is there to stop.
            form = self.get_form_class()(
                request, initial={"username": request.POST.get("username", "")}
            )
            context = self.get_context_data(form=form, throttled=refusal.message)
            return self.render_to_response(context, status=refusal.status)
        return super().post(request, *args, **kwargs)


logout_view = dashboard_csp(auth_views.LogoutView.as_view())


def dashboard_view(view: Callable) -> Callable:
    """Login required, the dashboard's CSP, and `request.membership` set from the session."""

    @login_required
    @dashboard_csp
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        memberships = list(
            Membership.objects.filter(user=request.user)
            .select_related("organization")
            .order_by("organization__name", "organization_id")
        )
        if not memberships:
            return render(request, "dashboard/no_organization.html", status=403)
        chosen = request.session.get(SESSION_ORG)
        membership = next((m for m in memberships if m.organization_id == chosen), memberships[0])
        request.membership = membership
        request.memberships = memberships
        return view(request, *args, **kwargs)

    return wrapper


def _require_manager(request: HttpRequest) -> None:
    if not request.membership.can_manage_keys:
        raise PermissionDenied("Only owners and admins manage API keys.")


@require_GET
@dashboard_view
def home(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard-usage")


@require_POST
@dashboard_view
def pick_organization(request: HttpRequest) -> HttpResponse:
    form = OrganizationPickForm(request.POST)
    if not form.is_valid():
        raise Http404
    slug = form.cleaned_data["organization"]
    membership = next((m for m in request.memberships if m.organization.slug == slug), None)
    if membership is None:
        raise Http404
    request.session[SESSION_ORG] = membership.organization_id
    return redirect("dashboard-usage")


def _days(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        return 30
    return days if days in USAGE_DAYS else 30


@require_GET
@dashboard_view
def usage(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    days = _days(request)
    window = analytics.Window.last_days(days)
    qs = analytics.counters(window, organization)
    blocks = []
    for slug, build in USAGE_CHARTS.items():
        series = build(qs, window)
        blocks.append(
            {
                "slug": slug,
                "series": series,
                "svg": charts.render(series, nonce=request.csp_nonce, title=False),
                "names": list(series.rows),
                "table": series.table(),
                "totals": series.totals,
            }
        )
    month = analytics.totals(analytics.counters(analytics.Window.this_month(), organization))
    context = {
        "delivery": metrics(organization, window.start),
        "nav": "usage",
        "days": days,
        "day_choices": USAGE_DAYS,
        "charts": blocks,
        "month": month,
        "window": window,
    }
    return render(request, "dashboard/usage.html", context)


def _csv_safe(text: str) -> str:
    # A key name such as "=HYPERLINK(...)" would run as a formula in a spreadsheet.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@require_GET
@dashboard_view
def usage_csv(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    chart = request.GET.get("chart", "outcome")
    if chart not in USAGE_CHARTS:
        raise Http404
    days = _days(request)
    window = analytics.Window.last_days(days)
    series = USAGE_CHARTS[chart](analytics.counters(window, organization), window)
    filename = f"fluxomail-usage-{organization.slug}-{chart}-{days}d.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(["day", *(_csv_safe(name) for name in series.rows)])
    writer.writerows(series.table())
    return response


@never_cache
@require_http_methods(["GET", "POST"])
@dashboard_view
def keys(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    new_token = None
    form = ApiKeyCreateForm()
    status = 200
    if request.method == "POST":
        _require_manager(request)
        form = ApiKeyCreateForm(request.POST)
        if form.is_valid():
            key, new_token = ApiKey.objects.create_key(
                organization=organization,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
                created_by=request.user,
            )
            # The token lives only in this response: never in the session, a cookie or a log.
            form = ApiKeyCreateForm()
            status = 201
        else:
            status = 400
    context = {
        "keys": ApiKey.objects.for_org(organization).select_related("created_by"),
        "form": form,
        "new_token": new_token,
        "can_manage": request.membership.can_manage_keys,
        "nav": "keys",
    }
    return render(request, "dashboard/keys.html", context, status=status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def revoke_key(request: HttpRequest, public_id: str) -> HttpResponse:
    organization = request.membership.organization
    key = get_object_or_404(ApiKey.objects.for_org(organization), public_id=public_id)
    _require_manager(request)
    if request.method == "POST":
        key.revoke()
        messages.success(request, f"Revoked {key.name} ({key.prefix}…).")
        return redirect("dashboard-keys")
    return render(request, "dashboard/key_revoke.html", {"key": key, "nav": "keys"})


@require_GET
@dashboard_view
def sends(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    form = SendFilterForm(request.GET)
    qs = Send.objects.for_org(organization).select_related("api_key").order_by("-public_id")
    if form.is_valid():
        data = form.cleaned_data
        if data["status"]:
            qs = qs.filter(status=data["status"])
        if data["endpoint"]:
            qs = qs.filter(endpoint=data["endpoint"])
        if data["to"]:
            # Matches "Name <addr>" as well as a bare address, within one organization.
            qs = qs.filter(to__icontains=data["to"])
        if data["before"]:
            qs = qs.filter(public_id__lt=data["before"])
    # Keyset paging on the time-sortable public id: no OFFSET and no COUNT on a big table.
    rows = list(qs[: SENDS_PER_PAGE + 1])
    older = None
    if len(rows) > SENDS_PER_PAGE:
        rows = rows[:SENDS_PER_PAGE]
        params = request.GET.copy()
        params["before"] = rows[-1].public_id
        older = f"{reverse('dashboard-sends')}?{params.urlencode()}"
    return render(
        request,
        "dashboard/sends.html",
        {"sends": rows, "form": form, "older": older, "nav": "sends"},
    )


@require_GET
@dashboard_view
def send_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    organization = request.membership.organization
    send = get_object_or_404(
        Send.objects.for_org(organization).select_related("api_key"), public_id=public_id
    )
    attempts = list(send.messages.all())
    events = list(send.events.select_related("message"))
    shown = []
    for event in events:
        event.send = send
        shown.append(
            (
                "event",
                event.occurred_at,
                {"type": event.get_type_display(), "text": sentence(envelope(event))},
            )
        )
    timeline = sorted(
        [("attempt", m.created_at, m) for m in attempts] + shown,
        key=lambda item: item[1],
    )
    shown_attempt = next((m for m in reversed(attempts) if m.html or m.text), None)
    context = {
        "nav": "sends",
        "send": send,
        "attempts": attempts,
        "last_attempt": attempts[-1] if attempts else None,
        "reply_to": attempts[-1].headers.get("Reply-To", "") if attempts else "",
        "timeline": timeline,
        "has_preview": shown_attempt is not None,
        "text_part": shown_attempt.text if shown_attempt else "",
        # A short mail gets a short frame: the sandbox (no scripts) cannot measure its content.
        "short_preview": shown_attempt is not None and _is_short(shown_attempt.text),
        "body_purged_at": max(
            (m.body_purged_at for m in attempts if m.body_purged_at), default=None
        ),
        "retention_days": settings.RETENTION_DAYS,
    }
    return render(request, "dashboard/send_detail.html", context)


def _is_short(text: str) -> bool:
    return len(text) <= SHORT_PREVIEW_CHARS and text.count("\n") < SHORT_PREVIEW_LINES


@require_GET
@preview_csp
@dashboard_view
def send_preview(request: HttpRequest, public_id: str) -> HttpResponse:
    """The last attempt's HTML as sent, for a sandboxed iframe (never run in our origin)."""
    organization = request.membership.organization
    send = get_object_or_404(Send.objects.for_org(organization), public_id=public_id)
    message = send.messages.exclude(html="", text="").order_by("-created_at", "-id").first()
    if message is None:
        raise Http404
    # The open-tracking pixel is left out: the preview must not count an open (nor load it).
    body = (
        message.html.replace(pixel_html(send.public_id), "") or f"<pre>{escape(message.text)}</pre>"
    )
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
