"""The OpenAPI document against live answers: what a client generated from the document reads
is what the server sends (the envelope, the events page, the timeline and the metrics)."""

import copy

import jsonschema
import pytest

from sends import events
from sends.models import Event, Send


@pytest.fixture
def document(api):
    response = api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def _as_json_schema(schema, components: dict):
    """OpenAPI 3.0's schema dialect as JSON Schema: $refs inlined, `nullable` as a null type."""
    if isinstance(schema, list):
        return [_as_json_schema(item, components) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return _as_json_schema(copy.deepcopy(components[name]), components)
    result = {key: _as_json_schema(value, components) for key, value in schema.items()}
    if result.pop("nullable", False):
        result = {"anyOf": [result, {"type": "null"}]}
    return result


def response_schema(document: dict, path: str, method="get", status="200") -> dict:
    content = document["paths"][path][method]["responses"][status]["content"]
    schema = content["application/json"]["schema"]
    return _as_json_schema(schema, document["components"]["schemas"])


def closed(schema: dict, name: str) -> None:
    """Every property the document names is required in these answers."""
    assert set(schema["required"]) == set(schema["properties"]), name


@pytest.fixture
def activity(acme):
    send = Send.objects.create(
        organization=acme,
        endpoint="send",
        to="Reader <reader@example.com>",
        subject="Hello",
        status=Send.Status.SENT,
        metadata={"orderId": "42"},
    )
    for type, data in [
        (Event.Type.SENT, {}),
        (Event.Type.DELIVERED, {"response": "250 OK"}),
        (Event.Type.OPENED, {"machine": False, "userAgentClass": "browser"}),
        (Event.Type.CLICKED, {"url": "https://e.example/", "position": 0, "machine": False}),
        (Event.Type.BOUNCED, {"bounceType": "soft", "reason": "full"}),
        (Event.Type.DELAYED, {"reason": "later", "smtpCode": 451, "mtaHost": "mx.e.example"}),
    ]:
        events.record(send=send, type=type, data=data)
    return send


def test_events_page_matches_the_document(api, read_key, document, activity):
    schema = response_schema(document, "/api/v1/events")
    body = api.get("/api/v1/events", {"limit": 4}, **read_key.bearer).json()

    jsonschema.validate(body, schema)
    assert len(body["events"]) == 4 and body["nextCursor"] is not None
    envelope = document["components"]["schemas"]["EventEnvelope"]
    closed(envelope, "EventEnvelope")
    assert set(body["events"][0]) == set(envelope["properties"])


def test_timeline_matches_the_document(api, read_key, document, activity):
    schema = response_schema(document, "/api/v1/sends/{send_id}")
    body = api.get(f"/api/v1/sends/{activity.public_id}", {"limit": 2}, **read_key.bearer).json()

    jsonschema.validate(body, schema)
    assert [event["type"] for event in body["events"]] == ["email.delayed", "email.bounced"]


def test_metrics_match_the_document(api, read_key, document, activity):
    schema = response_schema(document, "/api/v1/metrics")
    body = api.get("/api/v1/metrics", {"window": "7d"}, **read_key.bearer).json()

    jsonschema.validate(body, schema)
    values = document["components"]["schemas"]["MetricValues"]
    assert set(body["metrics"]) == set(values["properties"])
    assert body["metrics"]["totalSent"] == 1


def test_webhook_endpoint_answers_match_the_document(api, alice_key, document):
    created = api.post(
        "/api/v1/webhook-endpoints",
        {"url": "https://hooks.example.com/in"},
        format="json",
        **alice_key.bearer,
    )
    jsonschema.validate(
        created.json(), response_schema(document, "/api/v1/webhook-endpoints", "post", "201")
    )
    detail = f"/api/v1/webhook-endpoints/{created.json()['id']}"
    listed = api.get("/api/v1/webhook-endpoints", **alice_key.bearer).json()
    jsonschema.validate(listed, response_schema(document, "/api/v1/webhook-endpoints"))
    endpoint = document["components"]["schemas"]["WebhookEndpoint"]
    closed(endpoint, "WebhookEndpoint")
    assert set(listed["data"][0]) == set(endpoint["properties"])
    tested = api.post(f"{detail}/test", **alice_key.bearer).json()
    path = "/api/v1/webhook-endpoints/{endpoint_id}/test"
    jsonschema.validate(tested, response_schema(document, path, "post", "202"))


def test_the_document_refuses_a_wrong_envelope(document):
    """The check above can fail: an envelope without its data's sendId is refused."""
    schema = _as_json_schema(
        {"$ref": "#/components/schemas/EventEnvelope"}, document["components"]["schemas"]
    )
    wrong = {
        "id": "evt_01m8wfwcbfpjvzz3gn7k2ymcca",
        "type": "email.sent",
        "created": "2026-03-02T09:00:00.000Z",
        "data": {"providerMessageId": None, "to": "a@b.c", "subject": "s", "metadata": {}},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema)
