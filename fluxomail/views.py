"""Small public pages and probes: the landing page, the error-code pages, the favicon,
liveness (/healthz) and readiness (/readyz)."""

import json

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from fluxomail.api import TITLES, problem_body

# Every error code of the API (fluxomail.api.TITLES) with its page at /docs/errors/<code>.
# tests/test_site.py checks that no code is left without one.
ERROR_DOCS = {
    "invalid_key": (
        401,
        "The request carried no API key, or one that is malformed, unknown, revoked or expired.",
        "Send the key as `Authorization: Bearer flx_…` or `x-api-key: flx_…`; create a new key "
        "in the dashboard if it was revoked.",
    ),
    "missing_scope": (
        403,
        "The key is valid but lacks the scope this endpoint needs (the message names it).",
        "Use a key that has the scope, or create one with it in the dashboard.",
    ),
    "tenant_paused": (
        403,
        "An operator paused the organization: nothing is sent or read until it is resumed.",
        "Contact the operator of this Fluxomail service.",
    ),
    "validation_error": (
        400,
        "The request was understood but a field is missing or invalid; `details` names each "
        "field with its reasons.",
        "Fix the named fields and send again; nothing was sent or stored.",
    ),
    "unsupported_media_type": (
        415,
        "The body is not JSON, or not UTF-8 JSON.",
        "Send `Content-Type: application/json` with a UTF-8 JSON body.",
    ),
    "length_required": (
        411,
        "The body came chunked, without Content-Length, through a server that does not "
        "de-chunk it.",
        "Send a Content-Length (every HTTP client does for a body it holds), or serve with "
        "gunicorn, which reads chunked bodies.",
    ),
    "payload_too_large": (
        413,
        "The body is larger than the service accepts.",
        "Send less: smaller attachments or HTML. The limits are in the API reference.",
    ),
    "idempotency_key_reused": (
        422,
        "This idempotency key was already used with a different request body.",
        "Use a new key for a new request; reuse a key only to retry the very same request.",
    ),
    "idempotency_in_progress": (
        409,
        "A request with this idempotency key is still running.",
        "Wait for `Retry-After` seconds and retry with the same key and body.",
    ),
    "rate_limited": (
        429,
        "The key's per-minute cap is used up.",
        "Wait for `Retry-After` seconds; the `X-RateLimit-*` headers tell where the window stands.",
    ),
    "not_found": (
        404,
        "No such resource in your organization (another organization's objects are never visible).",
        "Check the id and the key's organization.",
    ),
    "method_not_allowed": (
        405,
        "The endpoint does not take this HTTP method.",
        "Check the method in the API reference.",
    ),
    "not_acceptable": (
        406,
        "The Accept header excludes JSON.",
        "Accept `application/json` (or `application/problem+json` for errors).",
    ),
    "service_unavailable": (
        503,
        "A part the service needs (the database, or the cache when rate limits fail closed) "
        "is down.",
        "Retry later with the same idempotency key; nothing was sent.",
    ),
    "internal_error": (
        500,
        "The service or the mail provider failed. When a send was created, `sendId` names it.",
        "Retry with the same idempotency key: a retry delivers on the same send, never twice.",
    ),
}


def _error_doc(code: str) -> dict:
    status, meaning, action = ERROR_DOCS[code]
    example = problem_body(status, code, TITLES[code])
    example["requestId"] = "req_…"
    return {
        "code": code,
        "status": status,
        "title": TITLES[code],
        "meaning": meaning,
        "action": action,
        "example": json.dumps(example, indent=2),
    }


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "site/landing.html")


@require_safe
def error_docs(request: HttpRequest, code: str | None = None) -> HttpResponse:
    """/docs/errors/ lists every error code; /docs/errors/<code> is the page a problem body's
    `type` points to."""
    if code is None:
        errors = [_error_doc(name) for name in ERROR_DOCS]
    elif code in ERROR_DOCS:
        errors = [_error_doc(code)]
    else:
        raise Http404
    return render(
        request, "site/errors.html", {"errors": errors, "error": errors[0] if code else None}
    )


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    return redirect(static("favicon.svg"), permanent=True)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return False
    return True


@never_cache
@require_GET
def healthz(request):
    """Liveness, for load balancers: 200 when the database answers, 503 when it does not."""
    if not _database_ok():
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def _cache_ok() -> bool:
    try:
        key = "readyz:probe"
        cache.set(key, "1", timeout=5)
        return cache.get(key) == "1"
    except Exception:
        return False


def _static_ok() -> bool:
    """Production serves hashed file names from collectstatic's manifest: without it every
    page fails to render (a ValueError per {% static %}), so the instance is not ready."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    try:
        staticfiles_storage.url("favicon.svg")
    except ValueError:
        return False
    return True


def _broker_ok() -> bool:
    """The job broker takes connections (RabbitMQ or Redis; the filesystem transport always)."""
    from fluxomail.celery import app

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return False
    return True


@never_cache
@require_GET
def readyz(request):
    """Readiness: every part the service needs answers. 503 names the parts that do not."""
    checks = {"database": _database_ok(), "static": _static_ok()}
    if settings.REDIS_URL:
        checks["cache"] = _cache_ok()
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        checks["broker"] = _broker_ok()
    failing = sorted(name for name, ok in checks.items() if not ok)
    body = {
        "status": "error" if failing else "ok",
        "checks": {name: "ok" if ok else "unavailable" for name, ok in checks.items()},
    }
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)
