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
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
