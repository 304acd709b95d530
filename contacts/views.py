"""The recipient's pages: one-click unsubscribe (RFC 8058) and the hosted preferences page.

No login and no API key: the signed token in the link is the credential (contacts.tokens). A
GET never changes anything (mail scanners and link previews follow links); the RFC 8058 POST
and the pages' forms do. Forms are CSRF-exempt because the token, not a session, authorises
them, and a forged request would need the token.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from contacts import services, tokens
from contacts.models import ALL_MAIL, Category, Contact
from fluxomail.api import problem_response
from fluxomail.security import dashboard_csp

ONE_CLICK = "One-Click"


def _scope_name(target: tokens.Target) -> str:
    if target.category == ALL_MAIL:
        return f"all mail from {target.organization.name}"
    category = Category.objects.for_org(target.organization).get(key=target.category)
    return category.name


def _invalid(request: HttpRequest, *, page: bool) -> HttpResponse:
    if not page:
        # A machine's POST (RFC 8058): the API's error shape. Nothing was recorded.
        return problem_response(
            request,
            400,
            "validation_error",
            "Invalid unsubscribe token",
            {"token": ["Invalid token."]},
        )
    return render(request, "contacts/invalid_link.html", status=400)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
@dashboard_csp
def unsubscribe(request: HttpRequest) -> HttpResponse:
    """GET: a page asking to confirm. POST (`List-Unsubscribe=One-Click` from a mailbox
    provider, or the page's button): records the unsubscribe, idempotently."""
    token = request.GET.get("token")
    try:
        target = tokens.read(token)
    except tokens.BadToken:
        return _invalid(request, page=request.method != "POST")
    context = {
        "organization": target.organization,
        "address": target.address,
        "scope": _scope_name(target),
        # The same token: it names the organization and the address, which is all the
        # preferences page needs.
        "preferences_url": tokens.preferences_url(token),
    }
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == ONE_CLICK
        services.unsubscribe(
            organization_id=target.organization.pk,
            address=target.address,
            category=target.category,
            actor="recipient (one-click)" if one_click else "recipient (unsubscribe page)",
        )
        return render(request, "contacts/unsubscribed.html", context)
    return render(request, "contacts/unsubscribe.html", context)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
@dashboard_csp
def preferences(request: HttpRequest) -> HttpResponse:
    """The recipient's categories and the global switch, saved by the form's POST."""
    try:
        target = tokens.read(request.GET.get("token"))
    except tokens.BadToken:
        return _invalid(request, page=True)
    organization = target.organization
    categories = list(Category.objects.for_org(organization))
    contact = Contact.objects.for_org(organization).filter(email=target.address).first()
    saved = False
    if request.method == "POST":
        if contact is None:
            contact, _ = Contact.objects.get_or_create(
                organization=organization, email=target.address, defaults={"source": "recipient"}
            )
        services.set_preferences(
            contact,
            actor="recipient (preferences page)",
            subscribed=request.POST.get("subscribed") == "on",
            categories={c: request.POST.get(f"category-{c.key}") == "on" for c in categories},
        )
        saved = True
    state = services.preferences(contact, categories)
    chosen = {item["categoryKey"]: item["subscribed"] for item in state["subscriptions"]}
    context = {
        "organization": organization,
        "address": target.address,
        "subscribed": state["subscribed"],
        "categories": [(c, chosen[c.key]) for c in categories],
        "saved": saved,
    }
    return render(request, "contacts/preferences.html", context)
