"""The per-process cache of API keys and policies (fluxomail/hotcache.py): a change made anywhere
(another worker, another host, a bulk update that sends no signal) takes effect within a
second; a change made through this process takes effect at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, Organization
from fluxomail import hotcache
from sends.models import Policy

SEND = "/api/v1/emails/send"


@pytest.fixture
def clock(monkeypatch):
    """hotcache's clock, moved by hand: the second passes without the test sleeping."""
    now = [1000.0]
    monkeypatch.setattr(hotcache, "_clock", lambda: now[0])
    return now


def send(api, key, body):
    return api.post(SEND, body, format="json", **key.bearer)


def test_a_key_revoked_elsewhere_is_refused_once_a_second_has_passed(
    api, send_key, seed_body, clock
):
    assert send(api, send_key, seed_body).status_code == 200
    # As another host would: a plain UPDATE, no signal in this process.
    ApiKey.objects.filter(pk=send_key.key.pk).update(revoked_at=timezone.now())
    clock[0] += 1.001
    response = send(api, send_key, seed_body)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_key"


def test_an_organization_paused_elsewhere_is_refused_once_a_second_has_passed(
    api, send_key, seed_body, clock
):
    assert send(api, send_key, seed_body).status_code == 200
    Organization.objects.filter(pk=send_key.key.organization_id).update(paused=True)
    clock[0] += 1.001
    response = send(api, send_key, seed_body)
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_paused"


def test_a_policy_changed_elsewhere_applies_once_a_second_has_passed(
    api, send_key, seed_body, clock, mailoutbox
):
    del seed_body["htmlContent"]
    assert send(api, send_key, seed_body).status_code == 200
    assert "List-Unsubscribe" not in mailoutbox[-1].extra_headers
    Policy.objects.filter(organization_id=send_key.key.organization_id).update(
        one_click_unsubscribe=True
    )
    clock[0] += 1.001
    assert send(api, send_key, seed_body).status_code == 200
    assert "List-Unsubscribe" in mailoutbox[-1].extra_headers


def test_a_key_revoked_through_this_process_is_refused_at_once(api, send_key, seed_body, clock):
    assert send(api, send_key, seed_body).status_code == 200
    ApiKey.objects.get(pk=send_key.key.pk).revoke()
    assert send(api, send_key, seed_body).status_code == 401


def test_a_policy_saved_through_this_process_applies_at_once(
    api, send_key, seed_body, clock, mailoutbox
):
    del seed_body["htmlContent"]
    assert send(api, send_key, seed_body).status_code == 200
    policy = Policy.objects.get(organization_id=send_key.key.organization_id, key="transactional")
    policy.one_click_unsubscribe = True
    policy.save()
    assert send(api, send_key, seed_body).status_code == 200
    assert "List-Unsubscribe" in mailoutbox[-1].extra_headers


@pytest.mark.django_db(transaction=True)
def test_a_key_in_steady_use_is_not_read_from_the_database(api, send_key, seed_body, clock):
    assert send(api, send_key, seed_body).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert send(api, send_key, seed_body).status_code == 200
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "accounts_apikey" not in tables
    assert "sends_policy" not in tables
