"""Every page of the dashboard and the admin, in a real browser, as owner and as operator.

A page fails the test on a console error, a page error, or a 4xx/5xx answer to the page or any of
its assets. Each page's screenshot (1280x800, full page) lands in test-artifacts/pages/.
"""

import base64
import os
import re
from pathlib import Path

import pytest
import requests
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.models import Organization
from contacts.models import Category, Contact, Suppression, SuppressionChange
from sends.models import Event, Send
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from webhooks.models import Delivery, Endpoint

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "pages"
OPERATOR = ("olga", "correct horse battery")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visitor:
    """One browser context; records every console error, page error and 4xx/5xx answer."""

    def __init__(self, browser, base_url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.base_url = base_url
        self.problems: list[str] = []
        self.page.on(
            "console",
            lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on(
            "response",
            lambda r: self.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )

    def visit(self, path: str, shot: str, ready: str = "") -> None:
        self.problems.clear()
        self.page.goto(self.base_url + path, wait_until="networkidle")
        if ready:
            self.page.locator(ready).first.wait_for()
        for index in range(self.page.locator("iframe").count()):
            # A frame's text is painted before the screenshot (a sandboxed frame renders apart).
            self.page.frame_locator("iframe").nth(index).locator("body *").first.wait_for()
        self.page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        assert self.problems == [], (path, self.problems)


def seed(alice, alice_key, smtp_server, live_server) -> Send:
    """A send with everything the send page shows, made through the API; then the rest."""
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
            }
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
    rejected = requests.post(url, json={"to": "nobody"}, headers=headers | {"Idempotency-Key": "x"})
    assert rejected.status_code == 400
    organization = alice.organization
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
    endpoint = Endpoint(organization=organization, url="https://hooks.example.com/in")
    endpoint.event_types = ["email.*"]
    endpoint.save()
    event = Event.objects.filter(organization=organization).first()
    Delivery.objects.create(
        endpoint=endpoint,
        event=event,
        message_id=event.public_id,
        event_type=event.type,
        body="{}",
        max_attempts=5,
    )
    return Send.objects.get(public_id=answer.json()["sendId"])


def test_every_dashboard_and_admin_page_loads_without_errors(
    browser, live_server, alice, alice_key, smtp_server, django_user_model, settings
):
    settings.WHITENOISE_USE_FINDERS = True  # the Swagger UI assets, from the installed packages
    send = seed(alice, alice_key, smtp_server, live_server)
    contact = Contact.objects.get(organization=alice.organization)

    owner = Visitor(browser, live_server.url)
    owner.visit("/", "landing")
    owner.visit("/docs/errors/", "docs-errors")
    owner.visit("/api/v1/docs", "api-docs", ready=".opblock-summary")
    summaries = owner.page.locator(".opblock-summary-description").all_text_contents()
    assert "Send an email" in summaries and "Send an email (global endpoint)" in summaries
    owner.page.goto(f"{live_server.url}/accounts/login/")
    owner.page.fill("#id_username", alice.user.username)
    owner.page.fill("#id_password", alice.password)
    owner.page.click("button[type=submit]")
    owner.page.wait_for_url("**/dashboard/**")
    dashboard = [
        ("/dashboard/", "dashboard-home"),
        ("/dashboard/usage/?days=7", "dashboard-usage-7"),
        ("/dashboard/usage/?days=30", "dashboard-usage-30"),
        ("/dashboard/usage/?days=90", "dashboard-usage-90"),
        ("/dashboard/keys/", "dashboard-keys"),
        (f"/dashboard/keys/{alice_key.key.public_id}/revoke", "dashboard-key-revoke"),
        ("/dashboard/sends/", "dashboard-sends"),
        (f"/dashboard/sends/{send.public_id}/", "dashboard-send"),
        ("/dashboard/suppressions/", "dashboard-suppressions"),
        (
            "/dashboard/suppressions/remove?address=gone@example.com&category=&reason=bounce",
            "dashboard-suppression-remove",
        ),
        ("/dashboard/contacts/", "dashboard-contacts"),
        (f"/dashboard/contacts/{contact.public_id}/", "dashboard-contact"),
    ]
    for path, shot in dashboard:
        owner.visit(path, shot)
    owner.context.close()

    django_user_model.objects.create_superuser(OPERATOR[0], "olga@example.com", OPERATOR[1])
    operator = Visitor(browser, live_server.url)
    operator.page.goto(f"{live_server.url}/admin/login/")
    operator.page.fill("#id_username", OPERATOR[0])
    operator.page.fill("#id_password", OPERATOR[1])
    operator.page.click("input[type=submit]")
    operator.page.wait_for_url("**/admin/")
    operator.visit("/admin/", "admin-index")
    assert operator.page.locator("#site-name").text_content().strip() == "Fluxomail administration"
    operator.visit(reverse("admin:usage_analytics"), "admin-analytics")
    for model in admin.site._registry:
        label = f"{model._meta.app_label}_{model._meta.model_name}"
        operator.visit(reverse(f"admin:{label}_changelist"), f"admin-{label}-list")
        row = model.objects.order_by("pk").first()
        assert row is not None, f"seed a {label} row"
        operator.visit(reverse(f"admin:{label}_change", args=[row.pk]), f"admin-{label}")
    assert Organization.objects.exists()
    operator.context.close()


def test_send_page_shows_headers_attachments_text_and_ids(
    browser, live_server, alice, alice_key, smtp_server
):
    send = seed(alice, alice_key, smtp_server, live_server)
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
    assert facts["Attachments"] == "invoice.pdf · application/pdf · 13 bytes"
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
    make_key(alice.organization, name="web")
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
    help_text = owner.page.locator("#create-key .help").text_content()
    assert '"Send email" is ticked for you' in help_text
