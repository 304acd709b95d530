"""The API's error body (SPEC.md section 4) as the tests expect it, written out by hand rather
than taken from fluxomail.api, so that a change there shows up as a failing test."""

PROBLEM_MEMBERS = {
    "type",
    "title",
    "status",
    "detail",
    "code",
    "error",
    "message",
    "details",
    "requestId",
}

TITLES = {
    "validation_error": "Validation failed",
    "invalid_key": "Invalid API key",
    "missing_scope": "Missing scope",
    "tenant_paused": "Tenant paused",
    "unsupported_media_type": "Unsupported media type",
    "payload_too_large": "Payload too large",
    "length_required": "Length required",
    "not_found": "Not found",
    "not_acceptable": "Not acceptable",
    "idempotency_key_reused": "Idempotency key reused",
    "internal_error": "Internal error",
}


def problem(status: int, code: str, message: str, request_id: str, details=None) -> dict:
    return {
        "type": f"/docs/errors/{code}",
        "title": TITLES[code],
        "status": status,
        "detail": message,
        "code": code,
        "error": message,
        "message": message,
        "details": details or {},
        "requestId": request_id,
    }
