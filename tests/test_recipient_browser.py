"""A recipient in a real browser (headless Chromium, Playwright): the unsubscribe link of a bulk
mail received over SMTP, its confirmation page, and the preferences page."""

import email
import os
from email import policy as email_policy
from urllib.parse import urlsplit

import pytest
import requests

from contacts.models import Category, Contact, Subscription, Suppression, SuppressionChange
from tests.conftest import SEED_BODY
from tests.test_browser import ARTIFACTS, page  # noqa: F401 (the browser fixture)

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def send_bulk(live_server, key) -> str:
    answer = requests.post(
        f"{live_server.url}/api/v1/emails/send",
        json=dict(SEED_BODY, policyKey="bulk"),
        headers={"Authorization": f"Bearer {key.token}"},
        timeout=30,
    )
    return answer.json()["status"]


def test_a_recipient_unsubscribes_and_manages_preferences_in_a_browser(
    page,  # noqa: F811
    live_server,
    settings,
    alice,
    make_key,
    smtp_server,
):
    settings.SITE_URL = live_server.url
    Category.objects.create(
        organization=alice.organization, key="news", name="Newsletter", description="Monthly"
    )
    key = make_key(alice.organization)
    assert send_bulk(live_server, key) == "sent"
    mail = email.message_from_bytes(smtp_server.messages[0].content, policy=email_policy.default)
    url = mail["List-Unsubscribe"].strip()[1:-1]
    assert urlsplit(url).netloc == urlsplit(live_server.url).netloc

    # Opening the link (as a person, or a scanner) asks first and changes nothing.
    page.goto(url)
    assert page.locator("h1").text_content() == "Unsubscribe from Acme"
    assert "Announcements and newsletters" in page.locator("main").text_content()
    assert not Suppression.objects.exists()
    page.screenshot(path=str(ARTIFACTS / "recipient-unsubscribe.png"), full_page=True)

    page.click("#confirm-unsubscribe")
    page.wait_for_selector("#unsubscribed")
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.category) == ("user@example.com", "bulk")
    assert SuppressionChange.objects.get().actor == "recipient (one-click)"

    # The preferences page shows the choice; the recipient subscribes to bulk mail again and
    # leaves the newsletter.
    page.click("#preferences-link")
    page.wait_for_selector("#preferences-form")
    assert page.locator("h1").text_content() == "Email preferences"
    assert not page.is_checked("#category-bulk")
    assert page.is_checked("#category-news")
    assert page.is_checked("#subscribed")
    page.check("#category-bulk")
    page.uncheck("#category-news")
    page.screenshot(path=str(ARTIFACTS / "recipient-preferences.png"), full_page=True)
    page.click("#save-preferences")
    page.wait_for_selector("#saved")
    assert page.is_checked("#category-bulk")
    assert not page.is_checked("#category-news")
    contact = Contact.objects.get()
    states = dict(
        Subscription.objects.filter(contact=contact).values_list("category__key", "subscribed")
    )
    assert states == {"bulk": True, "news": False}
    assert list(Suppression.objects.values_list("category", "reason")) == [("news", "unsubscribe")]

    # The next bulk mail goes out again.
    assert send_bulk(live_server, key) == "sent"
    assert page.console_errors == []


def test_an_owner_removes_a_suppression_in_the_dashboard(page, live_server, alice):  # noqa: F811
    from contacts.services import suppress
    from tests.test_browser import log_in

    suppress(
        organization_id=alice.organization.pk,
        address="ada@example.com",
        reason="manual",
        actor="test",
    )
    log_in(page, live_server, alice)
    page.click("nav a[href='/dashboard/suppressions/']")
    row = page.locator("tr[data-address='ada@example.com']")
    assert "manual" in row.text_content()
    page.screenshot(path=str(ARTIFACTS / "dashboard-suppressions.png"), full_page=True)
    row.locator("a", has_text="Remove").click()
    page.fill("#id_note", "confirmed by the recipient")
    page.click("#confirm-remove")
    page.wait_for_url(f"{live_server.url}/dashboard/suppressions/")
    assert page.locator("tr[data-address='ada@example.com']").count() == 0
    change = SuppressionChange.objects.get(action="removed")
    assert (change.user, change.note) == (alice.user, "confirmed by the recipient")
    assert page.console_errors == []
