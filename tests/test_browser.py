"""The dashboard and the admin's analytics in a real browser (headless Chromium, Playwright).

Screenshots of each page land in test-artifacts/ (git-ignored; CI keeps them as artifacts).
"""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, SEED_BODY
from usage.models import UsageCounter, UsageRejection

# Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the test
# itself (seeding, assertions) are still synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        # A CSP violation or a script error shows up as a console error: none is expected.
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.console_errors = errors
        yield page
        context.close()
        browser.close()


def seed_usage(organization, api_key) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    UsageCounter.objects.create(
        organization=organization, api_key=api_key, endpoint="send", hour=now,
        requests=31, sends=17, replays=3, rejected=5, rate_limited=4, failures=2,
        latency_ms_total=3100,
    )  # fmt: skip
    UsageCounter.objects.create(
        organization=organization, api_key=api_key, endpoint="send-global",
        hour=now - timedelta(days=1), requests=6, sends=6, global_endpoint_sends=6,
        latency_ms_total=600,
    )  # fmt: skip
    for code, count in (("validation_error", 3), ("missing_scope", 2)):
        UsageRejection.objects.create(
            organization=organization, api_key=api_key, endpoint="send", hour=now, code=code,
            count=count,
        )  # fmt: skip
    return now


def log_in(page, live_server, persona) -> None:
    page.goto(f"{live_server.url}/dashboard/usage/")
    assert page.url.startswith(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", persona.user.username)
    page.fill("#id_password", persona.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/dashboard/usage/")


def test_owner_sees_usage_creates_uses_and_revokes_a_key(
    page, live_server, alice, make_key, smtp_server
):
    old_key = make_key(alice.organization, name="production web")
    today = seed_usage(alice.organization, old_key.key).strftime("%Y-%m-%d")

    log_in(page, live_server, alice)
    page.click("a[href='?days=7']")
    page.wait_for_url("**/dashboard/usage/?days=7")
    # The chart is there as SVG, with the seeded value on today's bar ...
    chart = page.locator("#chart-outcome svg.pygal-chart")
    assert chart.count() == 1
    titles = chart.locator("g.bar > title").all_text_contents()
    assert f"sent · {today}: 17" in titles
    assert f"rate-limited · {today}: 4" in titles
    assert (
        page.locator("#chart-endpoint svg g.bar > title")
        .all_text_contents()
        .count(f"send-global · {today}: 0")
        == 1
    )
    # ... and the same numbers in the table under it.
    page.click("#chart-outcome summary")
    cells = page.locator(
        f"#chart-outcome table tbody tr:has(th:text-is('{today}')) td"
    ).all_text_contents()
    assert cells == ["17", "0", "3", "5", "4", "2"]
    assert page.locator("#month-totals [data-metric=requests]").text_content() in ("31", "37")
    page.screenshot(path=str(ARTIFACTS / "dashboard-usage.png"), full_page=True)

    # Create a key: the full token is on the page once.
    page.click("nav a[href='/dashboard/keys/']")
    page.fill("#id_name", "browser test")
    page.check("input[name=scopes][value=send_email]")
    page.fill("#id_rate_limit_per_minute", "120")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#new-key")
    token = page.locator("#new-key").text_content().strip()
    assert token.startswith("flx_")
    assert "you will not see this again" in page.content()
    page.screenshot(path=str(ARTIFACTS / "dashboard-keys.png"), full_page=True)

    # The key works against the send API.
    url = f"{live_server.url}/api/v1/emails/send"
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.post(url, json=SEED_BODY, headers=headers, timeout=30)
    # Until the send API lands this answers 501 (placeholder); with it, a real 200 and a mail.
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["sendId"].startswith("sends_")
    assert body["status"] == "sent"
    assert len(smtp_server.messages) == 1
    # The send is counted, and the usage page's per-key chart now has the new key's bar.
    page.goto(f"{live_server.url}/dashboard/usage/?days=7")
    key_titles = page.locator("#chart-key svg g.bar > title").all_text_contents()
    assert any(t.startswith("browser test (flx_") and t.endswith(f"{today}: 1") for t in key_titles)

    # Revoke it (with the confirmation step); the next request is refused.
    page.goto(f"{live_server.url}/dashboard/keys/")
    assert page.locator("#new-key").count() == 0
    row = page.locator("tr", has_text="browser test")
    row.locator("a", has_text="Revoke").click()
    page.click("#confirm-revoke")
    page.wait_for_url(f"{live_server.url}/dashboard/keys/")
    assert page.locator("tr", has_text="browser test").locator(".status").text_content() == (
        "revoked"
    )
    answer = requests.post(url, json=SEED_BODY, headers=headers, timeout=30)
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_key"
    assert page.console_errors == []


def test_operator_sees_endpoint_analytics_in_the_admin(
    page, live_server, alice, make_key, django_user_model
):
    key = make_key(alice.organization, name="production web")
    seed_usage(alice.organization, key.key)
    django_user_model.objects.create_superuser(
        username="olga", email="olga@example.com", password="correct horse battery"
    )
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    page.click("text=Endpoint analytics")
    page.wait_for_url("**/admin/usage/usagecounter/analytics/")
    cells = page.locator("tr[data-endpoint=send] td").all_text_contents()
    assert cells[:6] == ["31", "17", "3", "5", "4", "2"]
    assert cells[7] == "100.0 ms"
    assert cells[8] == "validation_error: 3, missing_scope: 2"
    assert page.locator("svg.pygal-chart").count() == 3
    page.select_option("#range", "7d")
    page.click("input[type=submit][value=Show]")
    page.wait_for_url("**range=7d**")
    assert page.locator("tr[data-endpoint=send-global] td").first.text_content() == "6"
    page.screenshot(path=str(ARTIFACTS / "admin-analytics.png"), full_page=True)


def test_mail_preview_renders_in_a_sandbox_without_running_scripts(page, live_server, alice):
    from sends.models import Event, Message, Send

    send = Send.objects.create(
        organization=alice.organization, endpoint="send", to="user@example.com",
        subject="Preview", status="sent",
    )  # fmt: skip
    message = Message.objects.create(
        send=send, from_email="hello@acme.test", to=["user@example.com"], provider="smtp",
        html='<p id="hello" style="color: rgb(200, 0, 0)">Hello preview</p>'
        '<script>document.body.dataset.ran = "yes"</script>',
    )  # fmt: skip
    Event.objects.create(send=send, message=message, type=Event.Type.SENT)
    log_in(page, live_server, alice)
    page.click("nav a[href='/dashboard/sends/']")
    page.click(f"text={send.public_id}")
    page.wait_for_url(f"**/dashboard/sends/{send.public_id}/")
    frame = page.frame_locator("iframe.preview")
    hello = frame.locator("#hello")
    assert hello.text_content() == "Hello preview"
    # Inline styles apply (the preview's CSP allows them), scripts never run.
    assert hello.evaluate("e => getComputedStyle(e).color") == "rgb(200, 0, 0)"
    assert frame.locator("body").get_attribute("data-ran") is None
    page.screenshot(path=str(ARTIFACTS / "dashboard-send.png"), full_page=True)
