"""/metrics for operators (Prometheus text format), protected by METRICS_TOKEN."""

import re

import pytest


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = "scrape-" + "x" * 24
    return settings.METRICS_TOKEN


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample, 0 when it is absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def scrape(client, token) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def test_metrics_are_off_without_a_token(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_metrics_refuse_a_missing_or_wrong_token(client, db, token, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = client.get("/metrics", **extra)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"fluxomail_" not in response.content


def test_requests_latencies_and_sends_by_outcome_are_counted(
    client, api, token, send_key, seed_body
):
    route = "api/v1/emails/send"
    before = scrape(client, token)
    api.post("/api/v1/emails/send", seed_body, format="json", **send_key.bearer)
    api.post("/api/v1/emails/send", {"to": "x"}, format="json", **send_key.bearer)
    api.get("/api/v1/sends/sends_01zzzzzzzzzzzzzzzzzzzzzzzz", **send_key.bearer)
    after = scrape(client, token)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("fluxomail_http_requests_total", route=route, method="POST", status="200") == 1
    assert delta("fluxomail_http_requests_total", route=route, method="POST", status="400") == 1
    # The URL pattern, never the path with its id: label values stay bounded.
    assert (
        delta(
            "fluxomail_http_requests_total",
            route="api/v1/sends/<str:send_id>",
            method="GET",
            status="403",
        )
        == 1
    )
    assert delta("fluxomail_http_request_duration_seconds_count", route=route, method="POST") == 2
    assert delta("fluxomail_send_requests_total", endpoint="send", outcome="sent") == 1
    assert delta("fluxomail_send_requests_total", endpoint="send", outcome="rejected") == 1
    assert "sends_01zzzz" not in after


def test_queue_depth_counts_the_jobs_waiting(client, token, acme):
    from sends.models import QueuedSend, Send

    send = Send.objects.create(organization=acme, endpoint="send", to="a@b.example", subject="s")
    from django.utils import timezone

    now = timezone.now()
    QueuedSend.objects.create(send=send, payload={}, next_attempt_at=now, deadline=now)

    text = scrape(client, token)

    assert sample(text, "fluxomail_queue_depth", kind="queued_send") == 1
    assert sample(text, "fluxomail_queue_depth", kind="webhook_delivery") == 0
