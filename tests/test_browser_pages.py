"""Every page of the service in a real browser: the public and recipient pages, the owners'
dashboard (webhooks included) as owner, and the admin as operator.

A page fails the test on a console error, a page error, or a 4xx/5xx answer to the page (other
than the one it is meant to answer) or any of its assets. Each page's screenshot (1280 px wide,
full page) lands in test-artifacts/pages/. `test_every_html_url_is_visited` keeps the list of
pages complete: a URL pattern nobody visits, and that is not listed as no page, fails it.
"""

import base64
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from accounts.models import Membership, Organization, Scope
from contacts import tokens
from contacts.models import Category, Contact, Suppression, SuppressionChange
from sends.models import Event, Send
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.receivers import Receiver
from webhooks import delivery
from webhooks.models import Delivery, Endpoint

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = pytest.mark.django_db(transaction=True)
browser_test = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "pages"
OPERATOR = ("olga", "correct horse battery")

# Pages anyone reaches: the landing page, the error docs, the API docs, the login, and what a
# recipient opens from a mail (unsubscribe, preferences, and a broken link's page).
PUBLIC_PAGES = {
    "landing", "error-docs", "error-doc", "openapi-docs", "api/v1/docs/", "login", "logout",
    "unsubscribe", "preferences",
}  # fmt: skip
# The owners' dashboard; actions that only redirect are reached through their pages' buttons.
OWNER_PAGES = {
    "dashboard", "dashboard-organization", "dashboard-usage", "dashboard-keys",
    "dashboard-key-revoke", "dashboard-sends", "dashboard-send", "dashboard-send-preview",
    "dashboard-suppressions", "dashboard-suppression-remove", "dashboard-contacts",
    "dashboard-contact", "dashboard-webhooks", "dashboard-webhook", "dashboard-webhook-action",
    "dashboard-webhook-redeliver",
}  # fmt: skip
# URL patterns that render no page: the API, tracking, the ESPs' webhooks, probes, downloads.
NOT_PAGES = {
    "favicon": "a redirect to an SVG",
    "healthz": "JSON probe",
    "readyz": "JSON probe",
    "prometheus-metrics": "Prometheus text",
    "tracking-open": "a GIF",
    "tracking-click": "a redirect",
    "dashboard-usage-csv": "CSV",
    "dashboard-suppressions-csv": "CSV",
    "^(api|t|webhooks)/": "the API's not-found problem",
}
# Admin lists still wider than 1280 px with both sidebars open (their table scrolls sideways in
# its box): too many columns for the room the filter sidebar leaves. Any other list must fit.
KNOWN_TOO_WIDE = {
    "contacts_suppression", "contacts_suppressionchange", "usage_usagecounter",
    "webhooks_delivery",
}  # fmt: skip
# The admin's pages that are no page of their own.
ADMIN_NOT_PAGES = {
    "admin:jsi18n": "JavaScript (every admin form page loads it)",
    "admin:autocomplete": "JSON",
    "admin:view_on_site": "a redirect",
}


def url_routes(resolver: URLResolver, namespace: str = "", prefix: str = "") -> dict[str, str]:
    """Every URL pattern under `resolver`, by name (with its namespace; its route when it has no
    name), with its full route."""
    routes = {}
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            routes |= url_routes(pattern, inner, route)
        elif isinstance(pattern, URLPattern):
            name = pattern.name or route
            routes[f"{namespace}:{name}" if namespace else name] = route
    return routes


def test_every_html_url_is_visited_by_a_browser_test():
    routes = url_routes(get_resolver())
    # The public API (JSON, the event stream) and the ESPs' webhooks render no page.
    machine = {
        name
        for name, route in routes.items()
        if route.startswith(("api/v1/", "webhooks/anymail/")) and name not in PUBLIC_PAGES
    }
    rest = set(routes) - machine - {name for name in routes if name.startswith("admin:")}
    assert PUBLIC_PAGES.isdisjoint(OWNER_PAGES)
    # A new page must join PUBLIC_PAGES or OWNER_PAGES (and be visited), or say why it is none.
    assert rest - PUBLIC_PAGES - OWNER_PAGES == set(NOT_PAGES)
    assert {*PUBLIC_PAGES, *OWNER_PAGES} <= rest


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visitor:
    """One browser context; records every console error, page error and 4xx/5xx answer, and the
    URL names of the pages it saw."""

    def __init__(self, browser, base_url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.base_url = base_url
        self.problems: list[str] = []
        self.seen: set[str] = set()
        self.expected_status: dict[str, int] = {}
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type != "error":
            return
        # Chromium reports a page's own error status on the console too: expected, for a page
        # that is meant to answer it (a broken link's page).
        status = self.expected_status.get(message.location.get("url"))
        if status and message.text.startswith(
            f"Failed to load resource: the server responded with a status of {status} "
        ):
            return
        self.problems.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400 and self.expected_status.get(response.url) != response.status:
            self.problems.append(f"{response.status} {response.url}")

    def _name(self, url: str) -> str:
        path = urlsplit(url).path
        match = resolve(path)
        if match.url_name is None:
            return f"{match.namespace}:{match.route}" if match.namespace else match.route
        return match.view_name

    def visit(self, path: str, shot: str, ready: str = "", status: int = 200) -> None:
        """Opens `path` (expecting `status` for the page itself) and checks it."""
        self.problems.clear()
        if status != 200:
            self.expected_status[self.base_url + path] = status
        response = self.page.goto(self.base_url + path, wait_until="networkidle")
        assert response.status == status, (path, response.status)
        self.seen.add(self._name(self.base_url + path))
        self.check(shot, ready)

    def act(self, click: str, shot: str, ready: str = "", status: int = 200) -> None:
        """Clicks `click` (a form's button) and checks the page the browser lands on."""
        self.problems.clear()
        with self.page.expect_navigation(wait_until="networkidle") as navigation:
            self.page.click(click)
        answer = navigation.value
        assert answer.status == status, (click, answer.status)
        for request in answer.request.redirected_from and [answer.request.redirected_from] or []:
            self.seen.add(self._name(request.url))
        self.seen.add(self._name(self.page.url))
        self.check(shot, ready)

    def check(self, shot: str, ready: str = "") -> None:
        if ready:
            self.page.locator(ready).first.wait_for()
        frames = self.page.locator("iframe").count()
        for index in range(frames):
            # A frame's text is painted before the screenshot (a sandboxed frame renders apart).
            self.page.frame_locator("iframe").nth(index).locator("body *").first.wait_for()
        path = str(ARTIFACTS / f"{shot}.png")
        if frames:
            # Chromium leaves a sandboxed (out-of-process) frame blank in a full-page capture
            # below the fold: the window is made as tall as the page instead.
            height = self.page.evaluate("document.documentElement.scrollHeight")
            self.page.set_viewport_size({"width": 1280, "height": height})
            self.page.evaluate(
                "() => new Promise(done => requestAnimationFrame(() => setTimeout(done)))"
            )
            self.page.screenshot(path=path)
            self.page.set_viewport_size({"width": 1280, "height": 800})
        else:
            self.page.screenshot(path=path, full_page=True)
        assert self.problems == [], (self.page.url, self.problems)

    def log_in(self, username: str, password: str) -> None:
        self.page.goto(f"{self.base_url}/accounts/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/dashboard/**")


def seed(alice, alice_key, live_server) -> Send:
    """A send with everything the send page shows, made through the API, an endpoint with a
    delivery log (one failed attempt waiting for its retry, one success); then the rest."""
    organization = alice.organization
    with Receiver(500, 200) as receiver:
        endpoint = Endpoint(organization=organization, url=receiver.url)
        endpoint.event_types = ["email.*"]
        endpoint.save()
        url = f"{live_server.url}/api/v1/emails/send"
        headers = {"Authorization": f"Bearer {alice_key.token}", "Idempotency-Key": "order-1042"}
        body = {
            "to": "Ann Buyer <ann@example.com>",
            "cc": ["cc@example.com"],
            "bcc": ["audit@example.com"],
            "replyTo": "support@acme.test",
            "subject": "Your order #1042 has shipped",
            "content": "Hi Ann, your order is on its way.",
            "htmlContent": "<p>Hi Ann, your order is on its way.</p>",
            "metadata": {"order": "1042"},
            "attachments": [
                {
                    "filename": "invoice.pdf",
                    "contentBase64": base64.b64encode(b"%PDF-1.4 test").decode(),
                    "contentType": "application/pdf",
                },
                {
                    "filename": "order-1042-items-exported-from-the-shop-backend-2026-11-30.csv",
                    "contentBase64": base64.b64encode(b"sku,qty\nA-1,2\n" * 200).decode(),
                },
            ],
        }
        answer = requests.post(url, json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        global_answer = requests.post(
            f"{live_server.url}/api/v1/emails/send-global",
            json={"to": "bo@example.com", "subject": "Hi", "content": "One line."},
            headers={"Authorization": f"Bearer {alice_key.token}"},
            timeout=30,
        )
        assert global_answer.status_code == 200, global_answer.text
        # The fan-out and delivery jobs, as a worker runs them.
        for event in Event.objects.filter(organization=organization).order_by("pk"):
            delivery.fan_out(event)
        for item in Delivery.objects.filter(endpoint=endpoint).order_by("pk"):
            delivery.attempt(item.pk)
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["pending", "succeeded"]
    rejected = requests.post(url, json={"to": "nobody"}, headers=headers | {"Idempotency-Key": "x"})
    assert rejected.status_code == 400
    Category.objects.create(organization=organization, key="news", name="News")
    Contact.objects.create(organization=organization, email="ann@example.com", name="Ann Buyer")
    Suppression.objects.create(
        organization=organization, address="gone@example.com", reason="bounce", actor="test"
    )
    SuppressionChange.objects.create(
        organization=organization, action="add", address="gone@example.com", reason="bounce",
        actor="test",
    )  # fmt: skip
    Group.objects.create(name="support")
    return Send.objects.get(public_id=answer.json()["sendId"])


@browser_test
def test_every_public_and_recipient_page_loads_without_errors(
    browser, live_server, alice, settings
):
    settings.WHITENOISE_USE_FINDERS = True  # the Swagger UI assets, from the installed packages
    settings.SITE_URL = live_server.url
    Category.objects.create(organization=alice.organization, key="news", name="Newsletter")
    token = tokens.make(alice.organization, "ann@example.com", "news")
    visitor = Visitor(browser, live_server.url)
    visitor.visit("/", "landing")
    visitor.visit("/docs/errors/", "docs-errors")
    visitor.visit("/docs/errors/validation_error", "docs-error")
    visitor.visit("/api/v1/docs", "api-docs", ready=".opblock-summary")
    summaries = visitor.page.locator(".opblock-summary-description").all_text_contents()
    assert "Send an email" in summaries and "Send an email (global endpoint)" in summaries
    visitor.visit("/api/v1/docs/", "api-docs-slash", ready=".opblock-summary")
    assert visitor.page.url == f"{live_server.url}/api/v1/docs"
    visitor.visit(f"/api/unsubscribe?token={token}", "recipient-unsubscribe")
    visitor.act("#confirm-unsubscribe", "recipient-unsubscribed", ready="#unsubscribed")
    visitor.visit(f"/preferences?token={token}", "recipient-preferences")
    visitor.visit("/api/unsubscribe?token=forged", "recipient-invalid-link", status=400)
    visitor.visit("/preferences?token=forged", "recipient-invalid-preferences", status=400)
    visitor.visit("/accounts/login/", "login")
    visitor.page.fill("#id_username", alice.user.username)
    visitor.page.fill("#id_password", alice.password)
    visitor.act("button[type=submit]", "after-login")
    visitor.act("text=Log out", "logged-out")
    assert PUBLIC_PAGES <= visitor.seen, PUBLIC_PAGES - visitor.seen
    visitor.context.close()


@browser_test
def test_every_dashboard_page_loads_without_errors(
    browser, live_server, alice, alice_key, smtp_server
):
    send = seed(alice, alice_key, live_server)
    contact = Contact.objects.get(organization=alice.organization)
    endpoint = Endpoint.objects.get(organization=alice.organization)
    owner = Visitor(browser, live_server.url)
    owner.log_in(alice.user.username, alice.password)
    dashboard = [
        ("/dashboard/", "dashboard-home"),
        ("/dashboard/usage/?days=7", "dashboard-usage-7"),
        ("/dashboard/usage/?days=30", "dashboard-usage-30"),
        ("/dashboard/usage/?days=90", "dashboard-usage-90"),
        ("/dashboard/keys/", "dashboard-keys"),
        (f"/dashboard/keys/{alice_key.key.public_id}/revoke", "dashboard-key-revoke"),
        ("/dashboard/sends/", "dashboard-sends"),
        (f"/dashboard/sends/{send.public_id}/", "dashboard-send"),
        (f"/dashboard/sends/{send.public_id}/preview", "dashboard-send-preview"),
        ("/dashboard/suppressions/", "dashboard-suppressions"),
        (
            "/dashboard/suppressions/remove?address=gone@example.com&category=&reason=bounce",
            "dashboard-suppression-remove",
        ),
        ("/dashboard/contacts/", "dashboard-contacts"),
        (f"/dashboard/contacts/{contact.public_id}/", "dashboard-contact"),
        ("/dashboard/webhooks/", "dashboard-webhooks"),
        (f"/dashboard/webhooks/{endpoint.public_id}/", "dashboard-webhook"),
    ]
    for path, shot in dashboard:
        owner.visit(path, shot)
    assert owner.page.locator("#deliveries tbody tr").count() == 2

    # A new endpoint: its secret is shown once, in the answer to the form (201).
    owner.visit("/dashboard/webhooks/", "dashboard-webhooks")
    owner.page.fill("#id_url", "https://hooks.example.com/fluxomail/events")
    owner.act("#create-endpoint button[type=submit]", "dashboard-webhook-created", status=201)
    created = Endpoint.objects.get(url="https://hooks.example.com/fluxomail/events")
    assert owner.page.locator("#new-secret").text_content() == created.secret
    owner.visit(f"/dashboard/webhooks/{created.public_id}/", "dashboard-webhook-new")
    assert created.secret not in owner.page.content()
    owner.act("#send-test", "dashboard-webhook-test-event")
    assert "A test event is on its way" in owner.page.locator(".messages").text_content()
    owner.act("#rotate", "dashboard-webhook-rotated")
    created.refresh_from_db()
    assert owner.page.locator("#new-secret").text_content() == created.secret
    owner.visit(f"/dashboard/webhooks/{endpoint.public_id}/", "dashboard-webhook")
    owner.act("#deliveries button:text('Redeliver')", "dashboard-webhook-redelivered")

    # Another organization of alice's: the picker in the top bar switches to it.
    other = Organization.objects.create(name="Acme Europe", slug="acme-eu")
    Membership.objects.create(user=alice.user, organization=other, role=Membership.Role.OWNER)
    owner.visit("/dashboard/usage/", "dashboard-usage-picker")
    owner.page.select_option("#org-pick", "acme-eu")
    owner.act(".account button:text('Switch')", "dashboard-usage-other-organization")
    assert "Acme Europe" in owner.page.locator("#org-pick option[selected]").text_content()
    assert OWNER_PAGES <= owner.seen, OWNER_PAGES - owner.seen
    owner.context.close()


@browser_test
def test_every_admin_page_loads_without_errors(
    browser, live_server, alice, alice_key, smtp_server, django_user_model
):
    seed(alice, alice_key, live_server)
    olga = django_user_model.objects.create_superuser(OPERATOR[0], "olga@example.com", OPERATOR[1])
    request = RequestFactory().get("/admin/")
    request.user = olga
    operator = Visitor(browser, live_server.url)
    operator.visit("/admin/login/", "admin-login")
    operator.page.fill("#id_username", OPERATOR[0])
    operator.page.fill("#id_password", OPERATOR[1])
    operator.act("input[type=submit]", "admin-index")
    assert operator.page.locator("#site-name").text_content().strip() == "Fluxomail administration"
    operator.visit("/admin/", "admin-index")
    refused = set()  # pages the admin answers 403 by design (read-only models)
    too_wide = []
    for range_key in ("24h", "7d", "30d"):
        operator.visit(
            f"{reverse('admin:usage_analytics')}?range={range_key}", f"admin-analytics-{range_key}"
        )
    for app_label in {model._meta.app_label for model in admin.site._registry}:
        operator.visit(reverse("admin:app_list", args=[app_label]), f"admin-app-{app_label}")
    for model, model_admin in admin.site._registry.items():
        label = f"{model._meta.app_label}_{model._meta.model_name}"
        row = model.objects.order_by("pk").first()
        assert row is not None, f"seed a {label} row"
        operator.visit(reverse(f"admin:{label}_changelist"), f"admin-{label}-list")
        # The list fits the window with the sidebar open: no sideways scrolling, of the page
        # or of the table in its box.
        overflow = (
            "() => Math.max(document.documentElement.scrollWidth - window.innerWidth,"
            " ...[...document.querySelectorAll('.results')]"
            ".map(e => e.scrollWidth - e.clientWidth))"
        )
        if operator.page.evaluate(overflow) > 0:
            too_wide.append(label)
        operator.visit(reverse(f"admin:{label}_change", args=[row.pk]), f"admin-{label}")
        operator.visit(reverse(f"admin:{label}_history", args=[row.pk]), f"admin-{label}-history")
        if model_admin.has_add_permission(request):
            operator.visit(reverse(f"admin:{label}_add"), f"admin-{label}-add")
        else:
            refused.add(f"admin:{label}_add")
        if model_admin.has_delete_permission(request, row):
            operator.visit(reverse(f"admin:{label}_delete", args=[row.pk]), f"admin-{label}-delete")
        else:
            refused.add(f"admin:{label}_delete")
    wider = set(too_wide) - KNOWN_TOO_WIDE
    assert not wider, f"lists wider than 1280 px with the sidebar open: {sorted(wider)}"
    operator.visit(
        reverse("admin:auth_user_password_change", args=[olga.pk]), "admin-user-password"
    )

    # A new key: shown once, in the answer to the form.
    operator.visit(reverse("admin:accounts_apikey_add"), "admin-accounts_apikey-add")
    operator.page.fill("#id_organization", str(alice.organization.pk))
    operator.page.fill("#id_name", "billing worker")
    operator.page.check("input[name=scopes][value=send_email]")
    operator.act("input[name=_save]", "admin-apikey-created")
    assert operator.page.locator("#new-key").text_content().startswith("flx_")
    # Removing a suppression asks why.
    operator.visit(
        reverse("admin:contacts_suppression_changelist"), "admin-contacts_suppression-list"
    )
    operator.page.check("input[name=_selected_action]")
    operator.page.select_option("select[name=action]", "remove_with_reason")
    operator.act("button[name=index]", "admin-suppression-remove")
    # Delivery's redeliver action lands back on the list with a message.
    operator.visit(reverse("admin:password_change"), "admin-password-change")
    operator.page.fill("#id_old_password", OPERATOR[1])
    operator.page.fill("#id_new_password1", "another correct horse")
    operator.page.fill("#id_new_password2", "another correct horse")
    operator.act("input[type=submit]", "admin-password-changed")
    operator.act("#logout-form button", "admin-logged-out")

    # Unnamed admin patterns are redirects (`<id>/` to its change page) and the catch-all.
    every = {
        name
        for name, route in url_routes(get_resolver()).items()
        if name.startswith("admin:") and name != f"admin:{route}"
    }
    missing = every - operator.seen - refused - set(ADMIN_NOT_PAGES)
    assert missing == set(), "admin pages no test visits"
    operator.context.close()


def test_send_page_shows_headers_attachments_text_and_ids(
    browser, live_server, alice, alice_key, smtp_server
):
    send = seed(alice, alice_key, live_server)
    owner = Visitor(browser, live_server.url)
    owner.page.goto(f"{live_server.url}/accounts/login/")
    owner.page.fill("#id_username", alice.user.username)
    owner.page.fill("#id_password", alice.password)
    owner.page.click("button[type=submit]")
    owner.page.wait_for_url("**/dashboard/**")
    owner.visit(f"/dashboard/sends/{send.public_id}/", "send-detail")
    page = owner.page
    assert page.locator("h1").text_content().strip() == "Your order #1042 has shipped"
    facts = dict(
        zip(
            [t.strip() for t in page.locator("dl.send-facts dt").all_text_contents()],
            [
                re.sub(r"\s+", " ", t).strip()
                for t in page.locator("dl.send-facts dd").all_text_contents()
            ],
            strict=True,
        )
    )
    assert facts["Reply-To"] == "support@acme.test"
    assert facts["Cc"] == "cc@example.com"
    assert facts["Bcc"] == "audit@example.com"
    assert facts["Idempotency key"] == "order-1042"
    assert facts["Request id"] == send.request_id
    assert facts["Metadata"] == "order: 1042"
    assert page.locator("#attachments").inner_text().replace("\xa0", " ").splitlines() == [
        "invoice.pdf · application/pdf · 13 bytes",
        "order-1042-items-exported-from-the-shop-backend-2026-11-30.csv · text/csv · 2.7 KB",
    ]
    assert facts["From"] == "Acme <hello@acme.test>"
    assert "your order is on its way" in page.locator("pre.text-part").text_content()
    height = page.locator("iframe.preview").evaluate("e => e.getBoundingClientRect().height")
    frame = page.frame_locator("iframe.preview")
    assert "on its way" in frame.locator("body").inner_html()
    # A one-line mail gets a short frame.
    assert 80 <= height <= 300


def test_keys_table_keeps_its_columns_after_a_revoke_and_cancel_stands_apart(
    browser, live_server, alice, make_key
):
    make_key(alice.organization, name="web", scopes=Scope.values)
    key = make_key(alice.organization, name="worker with a rather long name for the table")
    owner = Visitor(browser, live_server.url)
    owner.page.goto(f"{live_server.url}/accounts/login/")
    owner.page.fill("#id_username", alice.user.username)
    owner.page.fill("#id_password", alice.password)
    owner.page.click("button[type=submit]")
    owner.page.wait_for_url("**/dashboard/**")
    widths = "() => [...document.querySelectorAll('#keys thead th')].map(th => th.offsetWidth)"
    owner.visit("/dashboard/keys/", "keys-before-revoke")
    before = owner.page.evaluate(widths)
    owner.visit(f"/dashboard/keys/{key.key.public_id}/revoke", "key-revoke")
    button = owner.page.locator("#confirm-revoke").bounding_box()
    cancel = owner.page.locator("form a", has_text="Cancel").bounding_box()
    assert cancel["x"] - (button["x"] + button["width"]) >= 12
    owner.page.click("#confirm-revoke")
    owner.page.wait_for_url(f"{live_server.url}/dashboard/keys/")
    owner.visit("/dashboard/keys/", "keys-after-revoke")
    assert owner.page.evaluate(widths) == before
    # Each scope tag and status on one line: none is broken inside its name.
    tags = owner.page.locator("#keys tbody .tag, #keys tbody .status")
    assert tags.count() >= len(Scope.values) + 2
    for index in range(tags.count()):
        box = tags.nth(index).bounding_box()
        assert box["height"] < 24, tags.nth(index).text_content()
    help_text = owner.page.locator("#create-key .help").text_content()
    assert '"Send email" is ticked for you' in help_text
