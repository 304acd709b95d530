"""The operators' admin: endpoint analytics, and read-only lists that stay fast."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from sends.models import Event, IdempotencyRecord, Message, Send
from tests.usage_seed import NOW, counter, hour, seed_history

ANALYTICS = "/admin/usage/usagecounter/analytics/"


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="olga", email="olga@example.com", password="correct horse battery"
    )
    client.force_login(user)
    return client


@pytest.fixture
def history(frozen, alice, charlie, make_key):
    key_a = make_key(alice.organization, name="web")
    key_b = make_key(alice.organization, name="batch")
    seed_history(alice.organization, key_a.key, key_b.key)
    key_c = make_key(charlie.organization, name="globex")
    counter(charlie.organization, key_c.key, "send", hour(15, 10), requests=10, sends=2,
            failures=8, latency_ms_total=5000)  # fmt: skip
    return key_a, key_b, key_c


def endpoint_row(html: str, endpoint: str) -> list[str]:
    row = re.search(rf'<tr data-endpoint="{endpoint}">(.*?)</tr>', html, re.S).group(1)
    return [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.S)
    ]


def test_admin_index_links_to_the_analytics_page(staff_client):
    html = staff_client.get("/admin/").content.decode()
    assert f'<a href="{ANALYTICS}">Endpoint analytics</a>' in html
    assert reverse("admin:usage_analytics") == ANALYTICS


def test_analytics_shows_per_endpoint_totals_for_seven_days(staff_client, history):
    response = staff_client.get(f"{ANALYTICS}?range=7d")
    assert response.status_code == 200
    html = response.content.decode()
    # send: Acme 12 + 5 + 6 requests, Globex 10; send-global: Acme 4 + 9.
    assert endpoint_row(html, "send") == [
        "send", "33", "18", "2", "3", "1", "9", "0", "209.1 ms",
        "validation_error: 2, missing_scope: 1",
    ]  # fmt: skip
    assert endpoint_row(html, "send-global") == [
        "send-global", "13", "12", "0", "0", "0", "1", "12", "130.8 ms", "—"
    ]  # fmt: skip


def test_analytics_for_one_organization_and_the_last_24_hours(staff_client, history, alice):
    response = staff_client.get(f"{ANALYTICS}?range=24h&organization={alice.organization.pk}")
    html = response.content.decode()
    # 24 hours back from 13:00: 2026-03-14 13:00 to 2026-03-15 12:00, hourly.
    assert endpoint_row(html, "send")[:8] == ["send", "23", "16", "2", "3", "1", "1", "0"]
    assert endpoint_row(html, "send-global")[:3] == ["send-global", "4", "3"]
    charts = response.context["charts"]
    outcome = charts[0]["series"]
    assert outcome.labels[0] == "2026-03-14 13:00" and len(outcome.labels) == 24
    assert outcome.rows["sent"][outcome.labels.index("2026-03-15 09:00")] == 7
    assert outcome.rows["failed"][outcome.labels.index("2026-03-14 23:00")] == 1
    # No chart copies another: global_endpoint_sends is send-global's "sent" bars, not a chart.
    assert [c["series"].title for c in charts] == [
        "Requests by outcome",
        "send: requests by outcome",
        "send-global: requests by outcome",
    ]
    assert "<th>Sends through send-global</th>" in html
    assert "<title>sent · 2026-03-15 09:00: 7</title>" in html
    top_keys = response.context["top_keys_volume"]
    assert {row["api_key"].organization for row in top_keys} == {alice.organization}


def test_analytics_ranks_organizations_and_keys(staff_client, history, alice, charlie):
    response = staff_client.get(f"{ANALYTICS}?range=30d")
    ctx = response.context
    volume = [(r["organization"].name, r["requests_sum"]) for r in ctx["top_orgs_volume"]]
    assert volume == [("Acme", 38), ("Globex", 10)]
    errors = [(r["organization"].name, r["errors_sum"]) for r in ctx["top_orgs_errors"]]
    assert errors == [("Globex", 8), ("Acme", 6)]
    key_a, key_b, key_c = history
    assert [r["api_key"] for r in ctx["top_keys_volume"]] == [key_a.key, key_b.key, key_c.key]
    assert [r["api_key"] for r in ctx["top_keys_errors"]][0] == key_c.key
    html = response.content.decode()
    assert "80%" in html  # Globex: 8 errors of 10 requests


def test_analytics_with_no_data_renders_empty(staff_client, db):
    response = staff_client.get(f"{ANALYTICS}?range=nonsense&organization=x")
    assert response.status_code == 200
    assert endpoint_row(response.content.decode(), "send")[1:3] == ["0", "0"]
    assert response.context["range_key"] == "24h"


def test_analytics_is_refused_to_non_staff(client, alice, history):
    client.force_login(alice.user)
    response = client.get(ANALYTICS)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_analytics_needs_the_usage_view_permission(client, django_user_model, history):
    user = django_user_model.objects.create_user(username="sam", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(ANALYTICS).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_usagecounter"))
    assert client.get(ANALYTICS).status_code == 200


def test_organization_list_links_to_its_usage(staff_client, alice):
    html = staff_client.get("/admin/accounts/organization/").content.decode()
    assert f'href="{ANALYTICS}?organization={alice.organization.pk}&amp;range=7d"' in html


def make_send(organization, **fields) -> Send:
    send = Send.objects.create(organization=organization, endpoint="send", subject="Hi", **fields)
    message = Message.objects.create(
        send=send, from_email="a@acme.test", to=[send.to], provider="smtp",
        provider_message_id=f"<{send.public_id}@mx>",
    )  # fmt: skip
    Event.objects.create(send=send, message=message, type=Event.Type.SENT)
    return send


@pytest.mark.parametrize(
    "term",
    ["public_id", "provider_message_id", "to", "request_id"],
)
def test_admin_send_search_finds_by_each_identifier(staff_client, alice, term):
    wanted = make_send(alice.organization, to="x@example.com", request_id="req_want")
    other = make_send(alice.organization, to="y@example.com", request_id="req_other")
    query = {
        "public_id": wanted.public_id,
        "provider_message_id": f"<{wanted.public_id}@mx>",
        "to": "x@example.com",
        "request_id": "req_want",
    }[term]
    response = staff_client.get("/admin/sends/send/", {"q": query})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [wanted]
    assert other.public_id not in response.content.decode()


def test_admin_send_list_filters_and_skips_full_counts(staff_client, alice, charlie):
    sent = make_send(alice.organization, to="a@example.com", status="sent")
    failed = make_send(charlie.organization, to="b@example.com", status="failed")
    response = staff_client.get("/admin/sends/send/", {"status__exact": "failed"})
    assert list(response.context["cl"].result_list) == [failed]
    response = staff_client.get("/admin/sends/send/", {"policy_key": "transactional"})
    assert set(response.context["cl"].result_list) == {sent, failed}
    assert response.context["cl"].show_full_result_count is False


def test_admin_send_page_is_read_only_with_messages_and_events(staff_client, alice):
    send = make_send(alice.organization, to="a@example.com")
    response = staff_client.get(f"/admin/sends/send/{send.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"&lt;{send.public_id}@mx&gt;" in html
    assert "Save" not in re.sub(r"<title>.*?</title>", "", html)
    assert staff_client.get("/admin/sends/send/add/").status_code == 403
    assert staff_client.post(f"/admin/sends/send/{send.pk}/delete/").status_code == 403


def test_admin_lists_idempotency_records_with_age_and_expiry(staff_client, alice, frozen):
    IdempotencyRecord.objects.create(
        organization=alice.organization, key="order-1", endpoint="send", fingerprint="f" * 64,
        state="completed", created_at=NOW - timedelta(hours=3), expires_at=NOW - timedelta(hours=1),
    )  # fmt: skip
    response = staff_client.get("/admin/sends/idempotencyrecord/")
    html = response.content.decode()
    assert "order-1" in html and "3\xa0hours" in html
    assert 'alt="True"' in html  # expired
    assert staff_client.get("/admin/sends/idempotencyrecord/add/").status_code == 403


def test_admin_lists_usage_rows_read_only(staff_client, history):
    response = staff_client.get("/admin/usage/usagecounter/")
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 8
    assert staff_client.get("/admin/usage/usagecounter/add/").status_code == 403
    assert staff_client.get("/admin/usage/usagerejection/").status_code == 200


@pytest.mark.parametrize("path", ["/admin/usage/usagecounter/", "/admin/usage/usagerejection/"])
@pytest.mark.parametrize(
    "query",
    [
        "hour__year=9999",
        "hour__year=9999&hour__month=12",
        "hour__year=9999&hour__month=12&hour__day=31",
    ],
)
def test_a_date_hierarchy_at_the_end_of_time_is_an_invalid_lookup_not_a_500(
    staff_client, db, path, query
):
    response = staff_client.get(f"{path}?{query}")

    # Django's answer to any lookup it cannot run: back to the list with its error flag.
    assert response.status_code == 302
    assert response["Location"] == f"{path}?e=1"
    assert (
        staff_client.get(f"{path}?hour__year=9998&hour__month=12&hour__day=31").status_code == 200
    )
