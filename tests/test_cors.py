"""CORS on the public API (SPEC.md section 4, django-cors-headers): preflights answered without
a key, the listed methods and headers allowed, the listed response headers exposed, only for
the configured origins and only under /api/v1/."""

import logging
import os

import pytest

from sends.models import Send
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, SEED_BODY
from usage.models import UsageCounter, UsageRejection

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls stay
# synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ORIGIN = "https://app.example.com"
SEND = "/api/v1/emails/send"
ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, x-api-key, Content-Type, Idempotency-Key, X-Request-Id, Fluxomail-Version"
)
EXPOSE_HEADERS = (
    "X-Request-Id, Fluxomail-Request-Id, Idempotency-Key, Idempotency-Replayed, "
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy, "
    "Retry-After"
)
PREFLIGHT_HEADERS = {
    "access-control-allow-origin": ORIGIN,
    "access-control-allow-methods": ALLOW_METHODS,
    "access-control-allow-headers": ALLOW_HEADERS,
    "access-control-expose-headers": EXPOSE_HEADERS,
    "access-control-max-age": "86400",
}
# An actual (not preflight) cross-origin answer: the origin and the exposed headers only.
ANSWER_HEADERS = {
    "access-control-allow-origin": ORIGIN,
    "access-control-expose-headers": EXPOSE_HEADERS,
}


@pytest.fixture(autouse=True)
def allowed_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]


def cors_headers(response) -> dict:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def vary(response) -> set[str]:
    return {name.strip().lower() for name in response.get("Vary", "").split(",")}


def preflight(client, path: str, *, method: str = "POST", origin: str = ORIGIN):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,idempotency-key",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "method"),
    [
        (SEND, "POST"),
        ("/api/v1/emails/send-global", "POST"),
        ("/api/v1/sends", "GET"),
        ("/api/v1/sends/sends_0000000000000000000000000z", "GET"),
    ],
)
def test_preflight_from_an_allowed_origin_is_answered_without_a_key(client, caplog, path, method):
    with caplog.at_level(logging.WARNING):
        response = preflight(client, path, method=method)

    assert response.status_code == 200
    assert response.content == b""
    assert cors_headers(response) == PREFLIGHT_HEADERS
    assert "origin" in vary(response)
    assert response["X-Request-Id"] == response["Fluxomail-Request-Id"]
    # Never a 401, never counted as usage.
    assert not [r for r in caplog.records if r.name == "django.request"]
    assert UsageCounter.objects.count() == 0
    assert UsageRejection.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",
        "https://app.example.com.evil.example",
        "null",
    ],
)
def test_preflight_from_an_origin_not_allowed_gets_no_cors_headers(client, origin):
    response = preflight(client, SEND, origin=origin)

    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert UsageCounter.objects.count() == 0


@pytest.mark.django_db
def test_no_origin_is_allowed_with_the_setting_empty(client, settings, read_key):
    settings.CORS_ALLOWED_ORIGINS = []

    assert cors_headers(preflight(client, SEND)) == {}
    response = client.get("/api/v1/sends", HTTP_ORIGIN=ORIGIN, **read_key.bearer)
    assert response.status_code == 200
    assert cors_headers(response) == {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/admin/login/",
        "/accounts/login/",
        "/dashboard/",
        "/t/o/garbage.gif",
        "/healthz",
        "/api/v2/emails/send",
    ],
)
def test_cors_is_off_outside_the_public_api(client, path):
    for response in (preflight(client, path), client.get(path, HTTP_ORIGIN=ORIGIN)):
        assert response.status_code < 500
        assert cors_headers(response) == {}
        assert "origin" not in vary(response)


@pytest.mark.django_db
def test_an_options_request_that_is_not_a_preflight_still_needs_a_key(client):
    response = client.options("/api/v1/sends", HTTP_ORIGIN=ORIGIN)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_key"
    assert cors_headers(response) == {
        **ANSWER_HEADERS,
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-allow-methods": ALLOW_METHODS,
        "access-control-max-age": "86400",
    }


@pytest.mark.django_db
def test_cross_origin_get_exposes_the_listed_headers(client, read_key):
    response = client.get("/api/v1/sends", HTTP_ORIGIN=ORIGIN, **read_key.bearer)

    assert response.status_code == 200
    assert response.json() == {"data": [], "nextCursor": None}
    assert cors_headers(response) == ANSWER_HEADERS
    assert "origin" in vary(response)


@pytest.mark.django_db
def test_cross_origin_post_exposes_every_header_it_carries(client, alice, make_key):
    capped = make_key(alice.organization, rate_limit=5, name="capped")

    def post():
        return client.post(
            SEND,
            SEED_BODY,
            content_type="application/json",
            HTTP_ORIGIN=ORIGIN,
            HTTP_IDEMPOTENCY_KEY="web-1",
            **capped.bearer,
        )

    first, replay = post(), post()

    assert first.status_code == replay.status_code == 200
    exposed = {name.lower() for name in EXPOSE_HEADERS.split(", ")}
    for response in (first, replay):
        assert cors_headers(response) == ANSWER_HEADERS
        carried = {name.lower() for name in response.headers} & exposed
        assert carried >= {
            "x-request-id",
            "fluxomail-request-id",
            "idempotency-key",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "ratelimit",
            "ratelimit-policy",
        }
    assert replay["Idempotency-Replayed"] == "true"
    assert Send.objects.count() == 1


@pytest.mark.django_db
def test_cross_origin_errors_carry_the_cors_headers_so_browsers_can_read_them(
    client, alice, make_key
):
    capped = make_key(alice.organization, rate_limit=1, name="capped")
    body = {"to": "nobody"}
    client.post(SEND, body, content_type="application/json", **capped.bearer)

    unauthorized = client.post(SEND, body, content_type="application/json", HTTP_ORIGIN=ORIGIN)
    limited = client.post(
        SEND, body, content_type="application/json", HTTP_ORIGIN=ORIGIN, **capped.bearer
    )

    assert unauthorized.status_code == 401
    assert limited.status_code == 429
    assert limited["Retry-After"]
    for response in (unauthorized, limited):
        assert response["Content-Type"] == "application/json"
        assert cors_headers(response) == ANSWER_HEADERS


# -- in a real browser --------------------------------------------------------------------------

FETCH = """async ([url, key]) => {
  try {
    const headers = {"Content-Type": "application/json", "Idempotency-Key": "web-1"};
    if (key) headers["Authorization"] = "Bearer " + key;
    const r = await fetch(url, {method: "POST", headers, body: JSON.stringify(%s)});
    const names = ["Content-Type", "X-Request-Id", "Idempotency-Key", "X-RateLimit-Remaining"];
    return {status: r.status, body: await r.json(),
            headers: Object.fromEntries(names.map(n => [n, r.headers.get(n)]))};
  } catch (e) {
    return {blocked: String(e)};
  }
}"""


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page()
        browser.close()


def other_origin(live_server_url: str) -> str:
    """The live server under its other loopback name: the same server, another origin."""
    return live_server_url.replace("localhost", "127.0.0.1")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_page_on_an_allowed_origin_sends_and_reads_headers_and_errors(
    page, live_server, settings, alice, make_key, smtp_server
):
    key = make_key(alice.organization, rate_limit=5, name="web")
    page_origin = other_origin(live_server.url)
    assert page_origin != live_server.url
    settings.CORS_ALLOWED_ORIGINS = [page_origin]
    page.goto(f"{page_origin}/healthz")
    fetch = FETCH % '{"to": "user@example.com", "subject": "Hi", "content": "Hello"}'

    sent = page.evaluate(fetch, [f"{live_server.url}{SEND}", key.token])
    refused = page.evaluate(fetch, [f"{live_server.url}{SEND}", None])

    assert sent["status"] == 200, sent
    assert sent["body"]["status"] == "sent"
    assert sent["headers"]["X-Request-Id"]
    assert sent["headers"]["Idempotency-Key"] == "web-1"
    assert sent["headers"]["X-RateLimit-Remaining"] == "4"
    assert refused["status"] == 401, refused
    assert refused["headers"]["Content-Type"] == "application/json"
    assert refused["body"]["code"] == "invalid_key"
    assert refused["body"]["message"] == "Invalid API key"
    assert len(smtp_server.messages) == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_page_on_another_origin_cannot_call_the_api(
    page, live_server, settings, alice, make_key, smtp_server
):
    key = make_key(alice.organization, name="web")
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    page.goto(f"{other_origin(live_server.url)}/healthz")
    fetch = FETCH % '{"to": "user@example.com", "subject": "Hi", "content": "Hello"}'

    result = page.evaluate(fetch, [f"{live_server.url}{SEND}", key.token])

    assert "blocked" in result, result
    # The browser stopped at the preflight: the POST itself never reached the service.
    assert Send.objects.count() == 0
    assert smtp_server.messages == []
