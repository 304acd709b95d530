"""The owners' recipient pages: the suppression list (with manual add, remove and CSV export),
contacts, and one contact's subscriptions, suppressions and sends.

Every query starts from the organization picked in the dashboard; another organization's
contact is a 404. Owners and admins change the suppression list, members look.
"""

import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from contacts import services
from contacts.models import Category, Contact, Suppression, SuppressionChange
from sends.models import Event, Send
from usage.forms import AddressSearchForm, SuppressionAddForm, SuppressionRemoveForm
from usage.views import _csv_safe, dashboard_view

PER_PAGE = 50
CONTACT_SENDS = 20


def _require_manager(request: HttpRequest) -> None:
    if not request.membership.can_manage_keys:
        raise PermissionDenied("Only owners and admins change the suppression list.")


def _actor(request: HttpRequest) -> str:
    return f"owner {request.user.get_username()} (dashboard)"


def _page(request: HttpRequest, rows: list, url_name: str, key) -> tuple[list, str | None]:
    """Keyset paging: one row more than a page tells whether an older page exists."""
    older = None
    if len(rows) > PER_PAGE:
        rows = rows[:PER_PAGE]
        params = request.GET.copy()
        params["before"] = key(rows[-1])
        older = f"{reverse(url_name)}?{params.urlencode()}"
    return rows, older


def _sends_of_events(organization, event_ids) -> dict[str, str]:
    """Event id → its send's id, for the links to the event that caused a suppression."""
    ids = [event_id for event_id in event_ids if event_id]
    if not ids:
        return {}
    return dict(
        Event.objects.for_org(organization)
        .filter(public_id__in=ids)
        .values_list("public_id", "send__public_id")
    )


@require_http_methods(["GET", "POST"])
@dashboard_view
def suppressions(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    categories = list(Category.objects.for_org(organization))
    form = SuppressionAddForm(categories=categories)
    status = 200
    if request.method == "POST":
        _require_manager(request)
        form = SuppressionAddForm(request.POST, categories=categories)
        if form.is_valid():
            data = form.cleaned_data
            added = services.suppress(
                organization_id=organization.pk,
                address=data["address"],
                reason=Suppression.Reason.MANUAL,
                category=data["category"],
                actor=_actor(request),
                note=data["note"],
                user=request.user,
            )
            if added is None:
                messages.info(request, f"{data['address']} was already suppressed so.")
            else:
                messages.success(request, f"Suppressed {added.address} ({added.scope_label}).")
            return redirect("dashboard-suppressions")
        status = 400
    search = AddressSearchForm(request.GET)
    qs = Suppression.objects.filter(organization=organization).order_by("-id")
    if search.is_valid():
        if search.cleaned_data["q"]:
            qs = qs.filter(address=search.cleaned_data["q"])
        before = search.cleaned_data["before"]
        if before.isdigit():
            qs = qs.filter(id__lt=int(before))
    rows, older = _page(
        request, list(qs[: PER_PAGE + 1]), "dashboard-suppressions", lambda s: str(s.pk)
    )
    causes = _sends_of_events(organization, [s.source_event for s in rows])
    contacts = dict(
        Contact.objects.for_org(organization)
        .filter(email__in=[s.address for s in rows])
        .values_list("email", "public_id")
    )
    context = {
        "nav": "suppressions",
        "rows": [(s, causes.get(s.source_event), contacts.get(s.address)) for s in rows],
        "older": older,
        "form": form,
        "search": search,
        "can_manage": request.membership.can_manage_keys,
    }
    return render(request, "dashboard/suppressions.html", context, status=status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def remove_suppression(request: HttpRequest) -> HttpResponse:
    """GET: confirm with a reason; POST: lift it (logged with who and why)."""
    organization = request.membership.organization
    _require_manager(request)
    given = request.POST if request.method == "POST" else request.GET
    fields = {name: given.get(name, "")[:320] for name in ("address", "category", "reason")}
    suppression = get_object_or_404(Suppression.objects.filter(organization=organization), **fields)
    form = SuppressionRemoveForm(initial=fields)
    status = 200
    if request.method == "POST":
        form = SuppressionRemoveForm(request.POST)
        if form.is_valid():
            services.lift(
                suppression,
                actor=_actor(request),
                note=form.cleaned_data["note"],
                user=request.user,
            )
            messages.success(
                request,
                f"Removed the suppression of {suppression.address} ({suppression.reason}).",
            )
            return redirect("dashboard-suppressions")
        status = 400
    context = {"nav": "suppressions", "suppression": suppression, "form": form}
    return render(request, "dashboard/suppression_remove.html", context, status=status)


@require_GET
@dashboard_view
def suppressions_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every suppression of the organization, streamed (no list of them all in memory)."""
    organization = request.membership.organization

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())
    header = ["address", "scope", "reason", "source_event", "actor", "note", "created_at"]
    rows = Suppression.objects.filter(organization=organization).order_by("id").iterator(2000)

    def lines():
        yield writer.writerow(header)
        for s in rows:
            yield writer.writerow(
                [
                    _csv_safe(s.address),
                    s.category or "all",
                    s.reason,
                    s.source_event,
                    _csv_safe(s.actor),
                    _csv_safe(s.note),
                    s.created_at.isoformat(),
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    filename = f"fluxomail-suppressions-{organization.slug}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@dashboard_view
def contacts(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    search = AddressSearchForm(request.GET)
    qs = Contact.objects.for_org(organization).order_by("-public_id")
    if search.is_valid():
        if search.cleaned_data["q"]:
            qs = qs.filter(email=search.cleaned_data["q"])
        if search.cleaned_data["before"]:
            qs = qs.filter(public_id__lt=search.cleaned_data["before"])
    rows, older = _page(
        request, list(qs[: PER_PAGE + 1]), "dashboard-contacts", lambda c: c.public_id
    )
    context = {"nav": "contacts", "contacts": rows, "older": older, "search": search}
    return render(request, "dashboard/contacts.html", context)


@require_GET
@dashboard_view
def contact_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    organization = request.membership.organization
    contact = get_object_or_404(Contact.objects.for_org(organization), public_id=public_id)
    categories = list(Category.objects.for_org(organization))
    state = services.preferences(contact, categories)
    chosen = {item["categoryKey"]: item["subscribed"] for item in state["subscriptions"]}
    held = list(
        Suppression.objects.filter(organization=organization, address=contact.email).order_by("-id")
    )
    # Sends to the address, newest first: the same recipient match as the sends page.
    sends = list(
        Send.objects.for_org(organization)
        .filter(to__icontains=contact.email)
        .order_by("-public_id")[:CONTACT_SENDS]
    )
    changes = list(
        SuppressionChange.objects.filter(organization=organization, address=contact.email)[:50]
    )
    context = {
        "nav": "contacts",
        "contact": contact,
        "subscriptions": [(c, chosen[c.key]) for c in categories],
        "suppressions": held,
        "causes": _sends_of_events(organization, [s.source_event for s in held]),
        "sends": sends,
        "changes": changes,
        "can_manage": request.membership.can_manage_keys,
    }
    return render(request, "dashboard/contact_detail.html", context)
