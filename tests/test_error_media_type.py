"""The media type of error bodies (SPEC.md section 4): application/problem+json when the
client's Accept header names it, application/json otherwise, on every path that answers with
a problem body: DRF's exception handler, Django's 404 and 500 handlers, the API catch-all and
the tracking endpoints."""

from dataclasses import dataclass

import pytest
from django.http import Http404
from django.test import Client
from django.urls import path

from fluxomail import urls as root_urls
from tests import auth_urls
from tests.conftest import SEED_BODY, Key
from tests.problems import problem

JSON = "application/json"
PROBLEM = "application/problem+json"


def _plain_broken(request):
    raise RuntimeError("SELECT secret FROM somewhere WHERE password='hunter2'")


def _plain_missing(request):
    raise Http404("a detail that must not reach the client")


# The service's own URLs, the probe views of tests.auth_urls, and two plain Django views under
# /api/ whose exceptions reach Django's 404 and 500 handlers rather than DRF's.
urlpatterns = [
    path("api/v1/plain-broken", _plain_broken),
    path("api/v1/plain-missing", _plain_missing),
    *auth_urls.urlpatterns,
    *root_urls.urlpatterns,
]
handler400 = root_urls.handler400
handler404 = root_urls.handler404
handler500 = root_urls.handler500

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

# (Accept header or None for none at all, the media type of the error body)
ACCEPTS = [
    (None, JSON),
    ("*/*", JSON),
    ("application/json", JSON),
    ("application/*", JSON),
    ("application/problem+json", PROBLEM),
    ("application/json, application/problem+json", PROBLEM),
    ("application/problem+json, application/json;q=0.9", PROBLEM),
    ("application/json;q=0.5, application/problem+json;q=0.8, */*;q=0.1", PROBLEM),
    ("text/html, application/problem+json;q=0.9, */*;q=0.8", PROBLEM),
    ("application/problem+json;q=0.5, application/json", JSON),
    ("application/problem+json;q=0.5, */*", JSON),
    ("application/json, application/problem+json;q=0", JSON),
]
SEND = "/api/v1/emails/send"
NOT_FOUND = "/api/v1/sends/sends_0000000000000000000000000z"


def _missing_fields(api, keys, accept):
    return api.post(SEND, {}, format="json", **keys.send.bearer, **accept)


def _no_key(api, keys, accept):
    return api.get("/api/v1/sends", **accept)


def _missing_scope(api, keys, accept):
    return api.get("/api/v1/sends", **keys.send.bearer, **accept)


def _no_such_send(api, keys, accept):
    return api.get(NOT_FOUND, **keys.read.bearer, **accept)


def _unknown_api_path(api, keys, accept):
    return api.get("/api/v1/nothing-here", **keys.read.bearer, **accept)


def _django_404_under_api(api, keys, accept):
    return api.get("/api/v1/plain-missing", **accept)


def _unknown_pixel(api, keys, accept):
    return api.get("/t/o/garbage.gif", **accept)


def _idempotency_key_reused(api, keys, accept):
    def send(subject: str, **headers):
        body = dict(SEED_BODY, subject=subject)
        key = {"HTTP_IDEMPOTENCY_KEY": "order-1"}
        return api.post(SEND, body, format="json", **key, **keys.send.bearer, **headers)

    first = send("Hello")
    assert first.status_code == 200, first.content
    return send("Another", **accept)


def _drf_view_raises(api, keys, accept):
    return api.post("/api/v1/broken", {}, format="json", **keys.send.bearer, **accept)


def _django_view_raises(api, keys, accept):
    api.raise_request_exception = False
    return api.get("/api/v1/plain-broken", **accept)


REQUIRED = ["This field is required."]
# (request, status, code, message, details, answered by a DRF view)
ERRORS = {
    "400 validation": (
        _missing_fields,
        400,
        "validation_error",
        "Missing required fields: content, subject, to",
        {"to": REQUIRED, "subject": REQUIRED, "content": REQUIRED},
        True,
    ),
    "401 no key": (_no_key, 401, "invalid_key", "Invalid API key", None, True),
    "403 missing scope": (
        _missing_scope,
        403,
        "missing_scope",
        "Forbidden: missing scope read_sends",
        None,
        True,
    ),
    "404 no such send": (_no_such_send, 404, "not_found", "Not found", None, True),
    "404 unknown API path": (_unknown_api_path, 404, "not_found", "Not found", None, False),
    "404 Django handler": (_django_404_under_api, 404, "not_found", "Not found", None, False),
    "404 tracking": (_unknown_pixel, 404, "not_found", "Not found", None, False),
    "422 idempotency": (
        _idempotency_key_reused,
        422,
        "idempotency_key_reused",
        "Idempotency key was already used with a different request",
        None,
        True,
    ),
    "500 DRF view": (_drf_view_raises, 500, "internal_error", "Internal error", None, True),
    "500 Django handler": (
        _django_view_raises,
        500,
        "internal_error",
        "Internal error",
        None,
        False,
    ),
}


@dataclass
class Keys:
    send: Key
    read: Key


@pytest.fixture
def answer(api, read_key, send_key):
    """Makes the error `name` happen with the given Accept header; returns the answer."""

    def make(name: str, accept: str | None):
        headers = {} if accept is None else {"HTTP_ACCEPT": accept}
        return ERRORS[name][0](api, Keys(send_key, read_key), headers)

    return make


def assert_problem_answer(response, media_type, status, code, message, details=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == media_type
    assert "accept" in {name.strip().lower() for name in response["Vary"].split(",")}
    assert response.json() == problem(status, code, message, response["X-Request-Id"], details)


@pytest.mark.parametrize(("accept", "media_type"), ACCEPTS, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ERRORS)
def test_error_body_media_type_follows_the_accept_header(answer, name, accept, media_type):
    _, status, code, message, details, _ = ERRORS[name]

    response = answer(name, accept)

    assert_problem_answer(response, media_type, status, code, message, details)


@pytest.mark.parametrize("name", ERRORS)
def test_accept_without_json_is_a_json_406_on_api_views_and_json_elsewhere(answer, name):
    _, status, code, message, details, drf = ERRORS[name]

    response = answer(name, "text/html")

    if drf:
        # DRF negotiates before anything else: an Accept that rules JSON out is a 406,
        # its body in the default media type.
        assert_problem_answer(response, JSON, 406, "not_acceptable", "Not acceptable")
    else:
        assert_problem_answer(response, JSON, status, code, message, details)


@pytest.mark.parametrize("accept", ["application/problem+json", "application/problem+json;q=0.3"])
def test_asking_for_problem_json_only_still_gets_successes_as_json(api, read_key, accept):
    response = api.get("/api/v1/sends", HTTP_ACCEPT=accept, **read_key.bearer)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    assert response.json() == {"data": [], "nextCursor": None}


def test_unhandled_error_body_never_carries_the_exception_text():
    client = Client(raise_request_exception=False)

    response = client.get("/api/v1/plain-broken", HTTP_ACCEPT=PROBLEM)

    assert response.status_code == 500
    assert response["Content-Type"] == PROBLEM
    for leak in ("Traceback", "RuntimeError", "SELECT", "hunter2"):
        assert leak not in response.content.decode()


@pytest.mark.parametrize("accept", ["application/json;q=0", "text/html, application/json;q=0"])
def test_an_accept_that_gives_json_a_weight_of_zero_rules_it_out(api, read_key, accept):
    # RFC 9110 12.4.2: q=0 means "not acceptable". Found live: answered 200 application/json.
    response = api.get("/api/v1/sends", HTTP_ACCEPT=accept, **read_key.bearer)

    assert_problem_answer(response, JSON, 406, "not_acceptable", "Not acceptable")


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_the_usual_accept_values_get_json_successes(api, read_key, accept):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api.get("/api/v1/sends", **headers, **read_key.bearer)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    assert response.json() == {"data": [], "nextCursor": None}


def test_a_format_override_is_still_negotiated(api, read_key):
    response = api.get("/api/v1/sends?format=xml", HTTP_ACCEPT="*/*", **read_key.bearer)

    assert response.status_code == 404, response.content
