"""The owners' dashboard: login, organization picking, usage charts/tables/CSV, sends pages."""

import csv
import io
import re

import pytest
from django.contrib.auth.signals import user_login_failed
from django.urls import reverse

from accounts.models import ApiKey, Membership
from sends.models import Event, Message, Send
from tests.usage_seed import NOW, counter, hour, seed_history

DASHBOARD_URLS = [
    "/dashboard/",
    "/dashboard/usage/",
    "/dashboard/usage.csv",
    "/dashboard/keys/",
    "/dashboard/sends/",
    "/dashboard/sends/sends_x/",
    "/dashboard/sends/sends_x/preview",
]


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)


@pytest.fixture
def history(frozen, alice, make_key):
    key_a = make_key(alice.organization, name="web")
    key_b = make_key(alice.organization, name="batch")
    seed_history(alice.organization, key_a.key, key_b.key)
    return key_a, key_b


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice.user)
    return client


def table_rows(html: str, chart: str) -> list[list[str]]:
    """The body rows of one chart's table as text cells."""
    table = re.search(rf'<table class="numbers" data-chart="{chart}">(.*?)</table>', html, re.S)
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(1), re.S).group(1)
    return [
        re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def table_header(html: str, chart: str) -> list[str]:
    table = re.search(rf'<table class="numbers" data-chart="{chart}">(.*?)</table>', html, re.S)
    head = re.search(r"<thead>(.*?)</thead>", table.group(1), re.S).group(1)
    return re.findall(r"<th[^>]*>(.*?)</th>", head)


@pytest.mark.parametrize("url", DASHBOARD_URLS)
def test_anonymous_visitor_is_redirected_to_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_login_page_logs_in_and_goes_to_the_dashboard(client, alice):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": alice.password}, follow=False
    )
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert client.get("/dashboard/")["Location"] == "/dashboard/usage/"


def test_wrong_password_shows_a_form_error(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.usefixtures("still_clock")
def test_login_is_throttled_per_username_after_ten_attempts(client, alice):
    for i in range(10):
        response = client.post(
            "/accounts/login/",
            {"username": "Alice", "password": "wrong"},
            REMOTE_ADDR=f"10.0.0.{i}",
        )
        assert response.status_code == 200
    # The right password from yet another address: still refused while the minute lasts.
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": alice.password},
        REMOTE_ADDR="10.0.1.1",
    )
    assert response.status_code == 429
    assert "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.usefixtures("still_clock")
def test_login_is_throttled_per_address(client, alice):
    for i in range(10):
        client.post("/accounts/login/", {"username": f"user{i}", "password": "x"})
    response = client.post("/accounts/login/", {"username": "alice", "password": alice.password})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.usefixtures("still_clock")
def test_login_behind_a_proxy_is_throttled_per_forwarded_address(client, alice, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    for i in range(10):
        client.post(
            "/accounts/login/",
            {"username": f"user{i}", "password": "x"},
            REMOTE_ADDR="10.9.9.9",
            HTTP_X_FORWARDED_FOR=f"1.2.3.4, 203.0.113.{i % 2}",
        )
    # Same proxy, another client: not throttled by the others' failures.
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": alice.password},
        REMOTE_ADDR="10.9.9.9",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert response.status_code == 302
    # The client who failed five times from 203.0.113.0, whatever it puts in front, is counted.
    client.logout()
    for _ in range(5):
        client.post(
            "/accounts/login/",
            {"username": "other", "password": "x"},
            REMOTE_ADDR="10.9.9.9",
            HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.0",
        )
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": alice.password},
        REMOTE_ADDR="10.9.9.9",
        HTTP_X_FORWARDED_FOR="7.7.7.7, 203.0.113.0",
    )
    assert response.status_code == 429


@pytest.mark.usefixtures("still_clock")
def test_throttled_login_does_not_even_check_the_password(client, alice):
    checked = []

    def on_failure(sender, credentials, **kwargs):
        checked.append(credentials["username"])

    user_login_failed.connect(on_failure)
    try:
        for _ in range(11):
            client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    finally:
        user_login_failed.disconnect(on_failure)
    assert checked == ["alice"] * 10


def test_logout_ends_the_session(alice_client):
    response = alice_client.post("/accounts/logout/")
    assert response.status_code == 302
    assert alice_client.get("/dashboard/usage/").status_code == 302


def test_user_without_organization_is_told_so(client, django_user_model):
    user = django_user_model.objects.create_user(username="dora", password="pw-long-enough")
    client.force_login(user)
    response = client.get("/dashboard/usage/")
    assert response.status_code == 403
    assert "not a member of any organization" in response.content.decode()


def test_usage_tables_equal_the_seeded_rows(alice_client, history):
    response = alice_client.get("/dashboard/usage/?days=30")
    assert response.status_code == 200
    html = response.content.decode()

    outcome = table_rows(html, "outcome")
    assert len(outcome) == 30
    assert outcome[0][0] == "2026-02-14"
    by_day = {row[0]: row[1:] for row in outcome}
    assert table_header(html, "outcome") == [
        "Day", "sent", "suppressed", "replayed", "rejected", "rate-limited", "failed"
    ]  # fmt: skip
    assert by_day["2026-03-15"] == ["15", "0", "2", "2", "1", "1"]
    assert by_day["2026-03-14"] == ["4", "0", "0", "1", "0", "1"]
    assert by_day["2026-03-10"] == ["9", "0", "0", "0", "0", "0"]
    assert by_day["2026-03-01"] == ["2", "0", "0", "0", "0", "0"]
    assert by_day["2026-03-13"] == ["0", "0", "0", "0", "0", "0"]

    assert table_header(html, "endpoint") == ["Day", "send", "send-global"]
    endpoint = {row[0]: row[1:] for row in table_rows(html, "endpoint")}
    assert endpoint["2026-03-15"] == ["12", "3"]
    assert endpoint["2026-03-10"] == ["0", "9"]

    key_a, key_b = history
    # Keys in order of volume: web (12 + 4 = 16) before batch (3 + 9 + 2 = 14).
    assert table_header(html, "key") == [
        "Day", f"web ({key_a.key.prefix})", f"batch ({key_b.key.prefix})"
    ]  # fmt: skip
    per_key = {row[0]: row[1:] for row in table_rows(html, "key")}
    assert per_key["2026-03-15"] == ["12", "3"]
    assert per_key["2026-03-14"] == ["4", "0"]
    assert per_key["2026-03-01"] == ["0", "2"]


def test_usage_charts_carry_the_same_numbers_as_the_tables(alice_client, history):
    response = alice_client.get("/dashboard/usage/?days=30")
    charts = {chart["slug"]: chart["series"] for chart in response.context["charts"]}
    outcome = charts["outcome"]
    day = outcome.labels.index("2026-03-15")
    assert {name: values[day] for name, values in outcome.rows.items()} == {
        "sent": 15,
        "suppressed": 0,
        "replayed": 2,
        "rejected": 2,
        "rate-limited": 1,
        "failed": 1,
    }
    assert outcome.totals == {
        "sent": 30,
        "suppressed": 0,
        "replayed": 2,
        "rejected": 3,
        "rate-limited": 1,
        "failed": 2,
    }
    html = response.content.decode()
    # Server-side SVG, values readable without JavaScript: a <title> per bar, no <script>.
    assert html.count('class="pygal-chart"') == 3
    assert "<title>sent · 2026-03-15: 15</title>" in html
    assert "<title>send-global · 2026-03-10: 9</title>" in html
    assert "<script" not in html.split("<main>")[1].split("</main>")[0]


def test_usage_page_shows_this_months_totals(alice_client, history):
    response = alice_client.get("/dashboard/usage/?days=7")
    html = response.content.decode()
    expected = {
        "requests": 38,
        "sends": 30,
        "replays": 2,
        "rejected": 3,
        "rate_limited": 1,
        "failures": 2,
        "global_endpoint_sends": 12,
    }
    for metric, value in expected.items():
        assert f'<dd data-metric="{metric}">{value}</dd>' in html
    assert len(table_rows(html, "outcome")) == 7


def test_ninety_days_include_older_usage(alice_client, history):
    html = alice_client.get("/dashboard/usage/?days=90").content.decode()
    by_day = {row[0]: row[1:] for row in table_rows(html, "outcome")}
    assert len(by_day) == 90
    assert by_day["2026-02-01"] == ["50", "0", "0", "0", "0", "0"]


def test_unknown_range_falls_back_to_thirty_days(alice_client, history):
    html = alice_client.get("/dashboard/usage/?days=1000").content.decode()
    assert len(table_rows(html, "outcome")) == 30


def test_usage_shows_only_the_chosen_organizations_numbers(alice_client, history, charlie_key):
    counter(charlie_key.key.organization, charlie_key.key, "send", hour(15, 9), requests=99,
            sends=99)  # fmt: skip
    html = alice_client.get("/dashboard/usage/?days=30").content.decode()
    by_day = {row[0]: row[1:] for row in table_rows(html, "outcome")}
    assert by_day["2026-03-15"][0] == "15"
    assert "charlie all" not in html


@pytest.mark.parametrize("chart", ["outcome", "endpoint", "key"])
def test_csv_export_equals_the_table(alice_client, history, chart):
    html = alice_client.get("/dashboard/usage/?days=30").content.decode()
    response = alice_client.get(f"/dashboard/usage.csv?days=30&chart={chart}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="fluxomail-usage-acme-{chart}-30d.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header = table_header(html, chart)
    assert rows[0] == ["day", *header[1:]]
    assert rows[1:] == table_rows(html, chart)


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+1", "-1", "@SUM(1)", "\tcmd", "\rcmd"])
def test_csv_neutralises_key_names_that_look_like_formulas(
    alice_client, alice, make_key, frozen, name
):
    key = make_key(alice.organization)
    # Tabs and line breaks are refused at creation now; rows stored before may hold them.
    ApiKey.objects.filter(pk=key.key.pk).update(name=name)
    counter(alice.organization, key.key, "send", hour(15, 9), requests=1, sends=1)
    response = alice_client.get("/dashboard/usage.csv?days=7&chart=key")
    header = next(csv.reader(io.StringIO(response.content.decode())))
    assert header == ["day", f"'{name} ({key.key.prefix})"]


def test_usage_page_draws_key_names_stored_with_control_characters(
    alice_client, alice, make_key, frozen
):
    key = make_key(alice.organization)
    # A row stored before names were checked at creation.
    ApiKey.objects.filter(pk=key.key.pk).update(name="ctl\x01name\ufffe")
    counter(alice.organization, key.key, "send", hour(15, 9), requests=1, sends=1)

    response = alice_client.get("/dashboard/usage/?days=7")

    assert response.status_code == 200
    html = response.content.decode()
    assert f"<title>ctl\ufffdname\ufffd ({key.key.prefix}) · 2026-03-15: 1</title>" in html
    assert table_header(html, "key") == ["Day", f"ctl\x01name\ufffe ({key.key.prefix})"]


def test_csv_of_an_unknown_chart_is_404(alice_client, history):
    assert alice_client.get("/dashboard/usage.csv?chart=nope").status_code == 404


def test_dashboard_pages_send_a_strict_content_security_policy(alice_client, history):
    response = alice_client.get("/dashboard/usage/")
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    html = response.content.decode()
    # Every inline <style> (the charts') carries this response's nonce, and only it.
    styles = re.findall(r"<style[^>]*>", html)
    assert styles
    assert all(f'nonce="{nonce}"' in tag for tag in styles)
    again = alice_client.get("/dashboard/usage/")["Content-Security-Policy"]
    assert again != policy


def test_user_picks_one_of_their_organizations(client, alice, charlie, history, make_key):
    Membership.objects.create(user=alice.user, organization=charlie.organization, role="member")
    globex_key = make_key(charlie.organization, name="globex key")
    counter(charlie.organization, globex_key.key, "send", hour(15, 9), requests=4, sends=4)
    client.force_login(alice.user)
    html = client.get("/dashboard/usage/").content.decode()
    assert '<option value="globex">Globex</option>' in html
    response = client.post(reverse("dashboard-organization"), {"organization": "globex"})
    assert response.status_code == 302
    html = client.get("/dashboard/usage/?days=7").content.decode()
    by_day = {row[0]: row[1:] for row in table_rows(html, "outcome")}
    assert by_day["2026-03-15"][0] == "4"
    keys = client.get("/dashboard/keys/").content.decode()
    assert "<td>globex key</td>" in keys and "<td>web</td>" not in keys


def test_picking_an_organization_one_does_not_belong_to_is_404(alice_client, charlie):
    response = alice_client.post(reverse("dashboard-organization"), {"organization": "globex"})
    assert response.status_code == 404
    assert "dashboard_organization" not in alice_client.session


def make_send(organization, *, status="sent", to="user@example.com", html="<p>Hi</p>", **extra):
    send = Send.objects.create(
        organization=organization,
        endpoint="send",
        to=to,
        subject="Hello there",
        status=status,
        request_id="req_1",
        **extra,
    )
    message = Message.objects.create(
        send=send,
        from_email="hello@acme.test",
        to=[to],
        provider="smtp",
        provider_message_id=f"<{send.public_id}@acme.test>",
        text="Hi",
        html=html,
    )
    Event.objects.create(send=send, message=message, type=Event.Type.SENT)
    return send


def test_sends_page_lists_the_organizations_sends_with_a_status_filter(alice_client, charlie):
    sent = make_send(alice_client_org(alice_client), to="a@example.com")
    failed = make_send(alice_client_org(alice_client), status="failed", to="b@example.com")
    other = make_send(charlie.organization, to="c@example.com")
    html = alice_client.get("/dashboard/sends/").content.decode()
    assert sent.public_id in html and failed.public_id in html
    assert other.public_id not in html
    html = alice_client.get("/dashboard/sends/?status=failed").content.decode()
    assert failed.public_id in html and sent.public_id not in html


def test_sends_page_finds_a_recipient_written_with_a_display_name(alice_client):
    named = make_send(alice_client_org(alice_client), to="Zed Example <zed@example.com>")
    other = make_send(alice_client_org(alice_client), to="amy@example.com")
    html = alice_client.get("/dashboard/sends/?to=zed@example.com").content.decode()
    assert named.public_id in html and other.public_id not in html


def alice_client_org(client):
    return Membership.objects.get(user__username="alice").organization


def test_sends_page_pages_by_public_id(alice_client, settings, monkeypatch):
    monkeypatch.setattr("usage.views.SENDS_PER_PAGE", 2)
    org = alice_client_org(alice_client)
    sends = [make_send(org, to=f"u{i}@example.com") for i in range(3)]
    first = alice_client.get("/dashboard/sends/")
    assert [s.public_id for s in first.context["sends"]] == [
        sends[2].public_id,
        sends[1].public_id,
    ]
    older = first.context["older"]
    second = alice_client.get(older)
    assert [s.public_id for s in second.context["sends"]] == [sends[0].public_id]
    assert second.context["older"] is None


def test_send_detail_shows_the_timeline_and_a_sandboxed_preview(alice_client):
    send = make_send(alice_client_org(alice_client))
    response = alice_client.get(f"/dashboard/sends/{send.public_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"&lt;{send.public_id}@acme.test&gt;" in html
    assert '<span class="event event-sent">sent</span>' in html
    iframe = re.search(r"<iframe[^>]*>", html).group(0)
    assert " sandbox " in iframe
    assert "allow-scripts" not in iframe and "allow-same-origin" not in iframe
    assert f'src="/dashboard/sends/{send.public_id}/preview"' in iframe


def test_preview_serves_the_mail_html_under_a_sandbox_policy(alice_client):
    send = make_send(alice_client_org(alice_client), html="<p>Hi</p><script>alert(1)</script>")
    response = alice_client.get(f"/dashboard/sends/{send.public_id}/preview")
    assert response.status_code == 200
    assert response.content == b"<p>Hi</p><script>alert(1)</script>"
    assert response["Content-Security-Policy"] == (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'self'"
    )
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Cache-Control"] == "private, no-store"


def test_preview_of_a_text_only_mail_is_escaped(alice_client):
    send = make_send(alice_client_org(alice_client), html="")
    Message.objects.filter(send=send).update(text="<b>plain</b>")
    response = alice_client.get(f"/dashboard/sends/{send.public_id}/preview")
    assert response.content == b"<pre>&lt;b&gt;plain&lt;/b&gt;</pre>"


@pytest.mark.parametrize("suffix", ["", "preview"])
def test_another_organizations_send_is_404(alice_client, charlie, suffix):
    other = make_send(charlie.organization)
    response = alice_client.get(f"/dashboard/sends/{other.public_id}/{suffix}")
    assert response.status_code == 404


def test_usage_page_shows_delivery_bounce_and_complaint_rates(alice_client, charlie):
    from sends import events

    mine = [make_send(alice_client_org(alice_client), to=f"r{i}@example.com") for i in range(4)]
    for send in mine:
        events.record(send=send, type=Event.Type.SENT)
    for send in mine[:3]:
        events.record(send=send, type=Event.Type.DELIVERED)
    events.record(send=mine[3], type=Event.Type.BOUNCED, data={"bounceType": "hard"})
    events.record(send=mine[0], type=Event.Type.COMPLAINED)
    other = make_send(charlie.organization, to="c@example.com")
    events.record(send=other, type=Event.Type.BOUNCED, data={"bounceType": "hard"})

    html = alice_client.get("/dashboard/usage/?days=7").content.decode()

    assert '<dd data-metric="totalSent">4</dd>' in html
    assert '<dd data-metric="deliveryRate">3 · 75%</dd>' in html
    assert '<dd data-metric="bounceRate">1 · 25%</dd>' in html
    assert '<dd data-metric="complaintRate">1 · 25%</dd>' in html
    assert '<dd data-metric="delayedRate">0 · 0%</dd>' in html


def test_send_page_tells_each_event_as_a_sentence(alice_client):
    from sends import events

    send = make_send(alice_client_org(alice_client), to="a@example.com")
    events.record(send=send, type=Event.Type.DELIVERED, data={"response": "250 2.0.0 OK id=1"})
    events.record(
        send=send, type=Event.Type.BOUNCED, data={"bounceType": "soft", "reason": "mailbox full"}
    )
    events.record(send=send, type=Event.Type.COMPLAINED, data={"feedbackType": "abuse"})

    html = alice_client.get(f"/dashboard/sends/{send.public_id}/").content.decode()

    assert "Delivered; the receiving server answered “250 2.0.0 OK id=1”." in html
    assert "Bounced (soft bounce): mailbox full." in html
    assert "Marked as spam by the recipient (abuse)." in html


def test_send_page_lists_attachments_by_name_type_and_size(alice_client):
    organization = alice_client_org(alice_client)
    attached = make_send(
        organization,
        attachments=[
            {"filename": "invoice.pdf", "contentType": "application/pdf", "size": 13},
            {"filename": "<b>.csv", "contentType": "text/csv", "size": 2_500_000},
        ],
    )
    bare = make_send(organization, attachments=[])
    older = make_send(organization)  # sent before attachments were recorded

    def attachments(send) -> str:
        html = alice_client.get(f"/dashboard/sends/{send.public_id}/").content.decode()
        return re.search(r'<dd id="attachments">(.*?)</dd>', html, re.S).group(1)

    assert attachments(attached) == (
        "<code>invoice.pdf</code> · application/pdf · 13\xa0bytes<br>"
        "<code>&lt;b&gt;.csv</code> · text/csv · 2.4\xa0MB"
    )
    assert attachments(bare) == "—"
    assert attachments(older) == "not recorded (sent before attachments were recorded)"


@pytest.mark.parametrize(
    ("top", "ticks"),
    [(0, ["0", "1"]), (3, ["0", "1", "2", "3"]), (7, ["0", "2", "4", "6", "8"]),
     (240, ["0", "50", "100", "150", "200", "250"])],
)  # fmt: skip
def test_a_charts_y_axis_counts_in_whole_numbers(top, ticks):
    from usage import analytics, charts

    window = analytics.Window.last_days(7)
    # Stacked: the axis reaches the highest day's total, not one row's.
    rows = {"sent": [0] * 6 + [top - top // 3], "failed": [0] * 6 + [top // 3]}
    svg = charts.render(analytics.Series("Sends", window, rows))
    axis = re.search(r'<g class="axis y[^"]*">(.*?)</g></g>(?!<g class="guides">)', svg).group(1)
    assert re.findall(r"<text[^>]*>([^<]*)</text>", axis) == ticks


def test_requests_by_outcome_keep_their_colours_failed_in_red():
    from usage import analytics, charts

    window = analytics.Window.last_days(7)
    rows = {name: [1] * len(window.buckets) for name, _ in analytics.OUTCOMES}
    svg = charts.render(analytics.Series("Requests by outcome", window, rows))
    colours = dict(re.findall(r"\.color-(\d+)[^{]*\{[^}]*?fill: *(#[0-9a-fA-F]{6})", svg))
    names = list(rows)
    assert colours[str(names.index("failed"))].lower() == "#c62828"
    assert colours[str(names.index("sent"))].lower() == "#2e7d32"


def test_a_chart_without_any_row_says_no_data():
    from usage import analytics, charts

    svg = charts.render(analytics.Series("Sends", analytics.Window.last_days(7), {}))
    assert ">No data</text>" in svg


def test_a_chart_with_nothing_to_show_says_so_instead_of_an_empty_plot(alice_client):
    # No key has sent anything: the per-key chart has no row at all.
    html = alice_client.get("/dashboard/usage/").content.decode()

    chart = re.search(r'id="chart-key">(.*?)</section>', html, re.S).group(1)
    assert "<svg" not in chart
    assert '<p class="hint no-data">Nothing to chart in these days.</p>' in chart


def test_a_30_day_chart_prints_at_most_ten_date_labels_and_no_bar_values():
    from usage import analytics, charts

    window = analytics.Window.last_days(30)
    series = analytics.Series("Sends", window, {"sent": [3] * len(window.buckets)})
    svg = charts.render(series)
    printed = re.findall(r">(\d{4}-\d\d-\d\d)</text>", svg)
    assert 3 <= len(printed) <= 10, printed
    assert re.findall(r'<text[^>]*class="value"', svg) == []
    # Every day keeps its value in the bar's <title>.
    assert svg.count("<title>sent · ") == len(window.buckets)
