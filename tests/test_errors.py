import json
import logging

import pytest

from tests.problems import PROBLEM_MEMBERS

pytestmark = pytest.mark.django_db


def assert_problem(response, status: int, code: str):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) >= PROBLEM_MEMBERS
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/docs/errors/{code}"
    assert body["error"] == body["message"] == body["detail"]
    assert body["requestId"] == response["X-Request-Id"] == response["Fluxomail-Request-Id"]
    return body


def test_unknown_api_path_is_problem_404(client):
    body = assert_problem(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert body["details"] == {}


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/emails/send", "/t/x/y"])
def test_unknown_api_path_is_problem_404_with_debug_on(client, settings, path):
    settings.DEBUG = True
    assert_problem(client.post(path, "{}", content_type="application/json"), 404, "not_found")


@pytest.mark.urls("tests.auth_urls")
def test_wrong_method_is_problem_405(api, send_key):
    response = api.get("/api/v1/send-probe", **send_key.bearer)
    body = assert_problem(response, 405, "method_not_allowed")
    assert body["message"] == 'Method "GET" not allowed.'


@pytest.mark.urls("tests.auth_urls")
def test_body_that_is_not_json_is_problem_415(client, send_key):
    response = client.post(
        "/api/v1/send-probe", "to=a@b.c", content_type="text/plain", **send_key.bearer
    )
    body = assert_problem(response, 415, "unsupported_media_type")
    assert body["message"] == "Content-Type must be application/json"


@pytest.mark.urls("tests.auth_urls")
def test_malformed_json_is_problem_400(client, send_key):
    response = client.post(
        "/api/v1/send-probe", '{"to": ', content_type="application/json", **send_key.bearer
    )
    body = assert_problem(response, 400, "validation_error")
    assert body["details"] == {"body": ["Malformed JSON body"]}


@pytest.mark.urls("tests.auth_urls")
def test_body_over_the_limit_is_problem_413(client, send_key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    payload = json.dumps({"content": "x" * 2048})
    response = client.post(
        "/api/v1/send-probe", payload, content_type="application/json", **send_key.bearer
    )
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.urls("tests.auth_urls")
def test_unexpected_exception_is_problem_500_without_trace(client, send_key, caplog):
    with caplog.at_level(logging.INFO):
        response = client.post(
            "/api/v1/broken", "{}", content_type="application/json", **send_key.bearer
        )
    body = assert_problem(response, 500, "internal_error")
    assert body["message"] == "Internal error"
    text = response.content.decode()
    for leak in ("Traceback", "RuntimeError", "SELECT", "hunter2", send_key.token):
        assert leak not in text
    logged = "\n".join(
        logging.getLogger().handlers[0].format(record) if logging.getLogger().handlers else ""
        for record in caplog.records
    )
    assert "RuntimeError" in logged
    for leak in ("Traceback", "SELECT", "hunter2", send_key.token):
        assert leak not in logged


def test_client_request_id_is_echoed(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123.DEF_9")
    assert response["X-Request-Id"] == "abc-123.DEF_9"
    assert response["Fluxomail-Request-Id"] == "abc-123.DEF_9"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünïcode"])
def test_malformed_client_request_id_is_replaced(client, bad):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-Id"].startswith("req_")
    assert response["X-Request-Id"] != bad


def test_request_id_is_in_every_log_line_of_the_request(client, caplog):
    from fluxomail.middleware import RequestIdLogFilter

    logger = logging.getLogger("django.request")
    log_filter = RequestIdLogFilter()
    with caplog.at_level(logging.WARNING, logger="django.request"):
        caplog.handler.addFilter(log_filter)
        response = client.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID="trace-me-42")
        caplog.handler.removeFilter(log_filter)
    assert response.status_code == 404
    records = [r for r in caplog.records if r.name == logger.name]
    assert records, "Django logs a warning for a 404"
    assert all(record.request_id == "trace-me-42" for record in records)


def test_healthz_answers_when_the_database_does(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


def test_healthz_is_503_when_the_database_does_not_answer(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def fail(self, sql, params=None):
        raise RuntimeError("database down")

    monkeypatch.setattr(CursorWrapper, "execute", fail)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}
