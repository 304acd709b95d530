"""Fluxomail-Version: which version answers, and that every API answer says so."""

import pytest

from fluxomail import versioning


@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        (None, "2025-09-01"),
        ("2025-09-01", "2025-09-01"),
        ("2026-12-02", "2025-09-01"),  # after the newest: the newest
        ("2024-01-01", "2025-09-01"),  # before the oldest: the oldest
        (" 2025-09-01 ", "2025-09-01"),
    ],
)
def test_a_date_gets_the_version_released_by_then(api, read_key, asked, answered):
    headers = {} if asked is None else {"HTTP_FLUXOMAIL_VERSION": asked}
    response = api.get("/api/v1/sends", **headers, **read_key.bearer)

    assert response.status_code == 200
    assert response["Fluxomail-Version"] == answered


@pytest.mark.parametrize("asked", ["latest", "2025-13-01", "2025-02-30", "20250901", "v1"])
def test_a_value_that_is_not_a_date_is_a_400_naming_the_header_and_the_versions(
    api, read_key, asked
):
    response = api.get("/api/v1/sends", HTTP_FLUXOMAIL_VERSION=asked, **read_key.bearer)

    assert response.status_code == 400
    body = response.json()
    message = "Fluxomail-Version must be a date (YYYY-MM-DD); versions: 2025-09-01"
    assert (body["code"], body["message"]) == ("validation_error", message)
    assert body["details"] == {"Fluxomail-Version": [message]}
    assert response["Fluxomail-Version"] == versioning.LATEST


def test_every_api_answer_says_its_version_errors_included(api, send_key, seed_body):
    answers = [
        api.post("/api/v1/emails/send", seed_body, format="json", **send_key.bearer),
        api.get("/api/v1/sends"),  # 401
        api.get("/api/v1/sends", **send_key.bearer),  # 403
        api.get("/api/v1/nowhere", **send_key.bearer),  # 404
    ]

    assert [a.status_code for a in answers] == [200, 401, 403, 404]
    assert {a["Fluxomail-Version"] for a in answers} == {"2025-09-01"}


def test_pages_and_the_api_document_are_not_versioned(client, db):
    assert "Fluxomail-Version" not in client.get("/api/v1/openapi.json")
    assert "Fluxomail-Version" not in client.get("/healthz")
