"""Operators' metrics in Prometheus' text format at /metrics (prometheus-client).

Off unless METRICS_TOKEN is set (the endpoint is then a 404); with it, a scrape must send
`Authorization: Bearer <METRICS_TOKEN>`. Labels are bounded by construction: a URL pattern
(never a path with ids in it), a method, a status code, an outcome name.

Several gunicorn workers: set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by the
workers (prometheus-client's multiprocess mode); each scrape then sums every worker's values.
"""

import hmac
import os
import time

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "fluxomail_http_requests_total",
    "HTTP requests by URL pattern, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "fluxomail_http_request_duration_seconds",
    "Time to answer, by URL pattern and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SENDS = Counter(
    "fluxomail_send_requests_total",
    "Answers of the send API by outcome (sent, replayed, rejected, rate_limited, failed).",
    ["endpoint", "outcome"],
)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class QueueDepthCollector:
    """Jobs waiting at scrape time: queued sends not yet delivered, webhook deliveries still
    pending. Two counts over small tables (rows leave them once final; the pending deliveries
    have a partial index), read by model name so that this module imports no app."""

    def collect(self):
        from django.apps import apps
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "fluxomail_queue_depth", "Jobs waiting for a worker, by kind.", labels=["kind"]
        )
        for kind, label, filters in (
            ("sends.QueuedSend", "queued_send", {}),
            ("webhooks.Delivery", "webhook_delivery", {"status": "pending"}),
        ):
            try:
                count = apps.get_model(kind).objects.filter(**filters).count()
            except Exception:  # a scrape must not fail on a database hiccup
                continue
            depth.add_metric([label], count)
        yield depth


_QUEUE_REGISTRY = CollectorRegistry()
_QUEUE_REGISTRY.register(QueueDepthCollector())


def count_send(endpoint: str, outcome: str) -> None:
    SENDS.labels(endpoint=endpoint, outcome=outcome).inc()


class PrometheusMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
        LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)
        return response


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry) + generate_latest(_QUEUE_REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
