"""The OpenAPI document and its docs page: complete, valid, served without any CDN."""

import re

import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema

from fluxomail.api import TITLES
from tests.problems import PROBLEM_MEMBERS

SEND_ERRORS = {"400", "401", "403", "406", "409", "411", "413", "415", "422", "429", "500", "503"}


@pytest.fixture
def document(db) -> dict:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def test_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Fluxomail API"
    validate_schema(document)  # raises on an invalid document


def test_document_lists_every_api_operation(document):
    assert sorted(document["paths"]) == [
        "/api/v1/contacts/sync",
        "/api/v1/emails/send",
        "/api/v1/emails/send-global",
        "/api/v1/events",
        "/api/v1/events/stream",
        "/api/v1/metrics",
        "/api/v1/preferences",
        "/api/v1/sends",
        "/api/v1/sends/{send_id}",
        "/api/v1/tokens",
        "/api/v1/webhook-endpoints",
        "/api/v1/webhook-endpoints/{endpoint_id}",
        "/api/v1/webhook-endpoints/{endpoint_id}/test",
    ]


@pytest.mark.parametrize("path", ["/api/v1/emails/send", "/api/v1/emails/send-global"])
def test_send_operation_documents_body_success_and_every_error(document, path):
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SendEmailRequest"}
    request = document["components"]["schemas"]["SendEmailRequest"]
    assert sorted(request["required"]) == ["content", "subject", "to"]
    assert {"htmlContent", "cc", "bcc", "attachments", "policyKey", "idempotencyKey"} <= set(
        request["properties"]
    )
    responses = operation["responses"]
    assert set(responses) == {"200"} | SEND_ERRORS
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendEmailResult"
    }
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for code in SEND_ERRORS:
        assert responses[code]["content"] == {
            "application/json": problem,
            "application/problem+json": problem,
        }, code


def test_every_operation_documents_the_400_of_a_malformed_version(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "400" in operation["responses"], (path, method)


def test_every_error_answer_of_every_operation_lists_both_media_types(document):
    # The body is application/json or application/problem+json as the client's Accept asks;
    # schemathesis' content_type_conformance holds a live answer of either to the document.
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status == "204":
                    assert "content" not in response, (path, method)
                    continue
                if int(status) < 400:
                    continue  # JSON, or the stream's text/event-stream
                expected = {"application/json": problem, "application/problem+json": problem}
                assert response["content"] == expected, (path, method, status)


def test_send_operation_documents_request_and_response_headers(document):
    operation = document["paths"]["/api/v1/emails/send"]["post"]
    request_headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert request_headers == {"Idempotency-Key", "X-Request-Id", "Fluxomail-Version"}
    ok = operation["responses"]["200"]["headers"]
    assert {
        "X-Request-Id",
        "Fluxomail-Request-Id",
        "Fluxomail-Version",
        "Idempotency-Key",
        "Idempotency-Replayed",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "RateLimit-Policy",
        "RateLimit",
    } == set(ok)
    assert ok["X-Request-Id"]["required"] is True
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "Retry-After" in operation["responses"]["409"]["headers"]
    assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_problem_schema_has_every_documented_member_and_code(document):
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == PROBLEM_MEMBERS
    code_ref = problem["properties"]["code"]["$ref"].rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][code_ref]["enum"]) == set(TITLES)


def test_document_declares_bearer_and_x_api_key_as_alternatives(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An API key (`flx_` + 8-character id + `_` + secret) or, on GET requests, "
            "a short-lived token (`flxt_…`, from POST /api/v1/tokens)."
        ),
    }
    assert schemes["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    headers = [{"bearerAuth": []}, {"apiKeyHeader": []}]
    for name, path in document["paths"].items():
        for operation in path.values():
            # The stream also takes its credential in the query (EventSource sends no headers);
            # the preferences also answer to the recipient's own token, without a key.
            query = [{"tokenQuery": []}] if name == "/api/v1/events/stream" else []
            optional = [{}] if name == "/api/v1/preferences" else []
            assert operation["security"] == headers + query + optional, name


def test_stream_operation_documents_the_event_stream_its_filters_and_errors(document):
    operation = document["paths"]["/api/v1/events/stream"]["get"]
    assert set(operation) >= {"summary", "description", "parameters", "responses"}
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert query == {"types", "since", "domain", "smtpCode", "mtaHost"}
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert "Last-Event-ID" in headers
    responses = operation["responses"]
    # One event as an SSE parser (schemathesis' included) reads it.
    event = responses["200"]["content"]["text/event-stream"]["schema"]
    assert event["type"] == "object"
    assert set(event["properties"]) == {"id", "data", "event", "retry"}
    assert {"400", "401", "403", "500"} <= set(responses)
    assert document["components"]["securitySchemes"]["tokenQuery"] == {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "An API key or a short-lived token, for EventSource clients.",
    }


def test_token_operation_documents_its_body_answer_and_errors(document):
    operation = document["paths"]["/api/v1/tokens"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TokenRequest"}
    request = document["components"]["schemas"]["TokenRequest"]["properties"]
    assert request["ttlSeconds"] == {
        "type": "integer",
        "maximum": 3600,
        "minimum": 1,
        "default": 300,
        "description": "Lifetime in seconds.",
    }
    responses = operation["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Token"
    }
    assert set(document["components"]["schemas"]["Token"]["required"]) == {"token", "expiresAt"}
    assert responses["200"]["headers"]["Cache-Control"]["required"] is True
    assert {"400", "401", "403", "415"} <= set(responses)


def test_document_needs_no_key_and_ignores_a_bad_one(db):
    response = Client().get("/api/v1/openapi.json", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 200


def test_docs_page_loads_its_assets_from_this_service_only(db, settings):
    # Production serves collectstatic's copy; here whitenoise reads the installed packages.
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/v1/openapi.json" in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, html
    assert all(source.startswith("/") for source in sources), sources
    scripts = [s for s in sources if s.endswith(".js")]
    assert any("swagger-ui-bundle" in s for s in scripts), scripts
    for script in scripts:
        assert client.get(script).status_code == 200, script


def test_timeline_operations_document_their_bodies_filters_and_errors(document):
    listing = document["paths"]["/api/v1/sends"]["get"]
    query = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert query == {"limit", "cursor", "status", "endpoint", "to", "from", "until"}
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendPage"
    }
    detail = document["paths"]["/api/v1/sends/{send_id}"]["get"]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendTimeline"
    }
    for operation in (listing, detail):
        assert {"400", "401", "403", "404", "500", "503"} <= set(operation["responses"])
    timeline = document["components"]["schemas"]["SendTimeline"]
    assert set(timeline["properties"]) == {
        "send",
        "messages",
        "events",
        "nextCursor",
        "opens",
        "clicks",
    }
    attempt = document["components"]["schemas"]["MessageAttempt"]
    assert "from" in attempt["properties"] and "from_" not in attempt["properties"]


def test_recipient_operations_document_their_bodies_and_errors(document):
    schemas = document["components"]["schemas"]
    preferences = document["paths"]["/api/v1/preferences"]
    assert {p["name"] for p in preferences["get"]["parameters"] if p["in"] == "query"} == {
        "token",
        "email",
    }
    assert preferences["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Preferences"
    }
    assert set(schemas["Preferences"]["properties"]) == {
        "contact",
        "categories",
        "subscriptions",
        "subscribed",
    }
    assert {"400", "401", "403", "404", "415"} <= set(preferences["post"]["responses"])
    sync = document["paths"]["/api/v1/contacts/sync"]["post"]
    assert {"200", "400", "401", "403", "409", "413", "415", "422"} <= set(sync["responses"])
    request = schemas["ContactsSyncRequest"]
    assert request["properties"]["contacts"]["maxItems"] == 1000
    assert request["properties"]["contacts"]["minItems"] == 1
    assert set(schemas["ContactsSyncResult"]["required"]) == {
        "ok", "source", "processed", "created", "updated", "failed", "skippedStale",
        "skippedDuplicate", "unsubscribed", "resubscribed", "replayed", "syncedAt", "errors",
    }  # fmt: skip
    result = schemas["SendEmailResult"]["properties"]
    status_ref = result["status"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert schemas[status_ref]["enum"] == ["sent", "queued", "suppressed", "failed"]
    assert result["messageId"]["nullable"] is True


def test_send_and_send_global_have_distinct_summaries_naming_what_send_global_adds(document):
    send = document["paths"]["/api/v1/emails/send"]["post"]
    send_global = document["paths"]["/api/v1/emails/send-global"]["post"]
    assert send["summary"] == "Send an email"
    assert send_global["summary"] == "Send an email (global endpoint)"
    assert "global_endpoint_sends" in send_global["description"]
    assert "global_endpoint_sends" not in send["description"]


def test_docs_page_sends_no_csrf_header_and_generates_an_idempotency_key(db):
    html = Client().get("/api/v1/docs").content.decode()
    assert "X-CSRFTOKEN" not in html.upper()
    assert 'request.headers["Idempotency-Key"] = crypto.randomUUID' in html
