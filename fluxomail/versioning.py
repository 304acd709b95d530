"""API versions (`Fluxomail-Version`): dated, like the official SDK sends them.

The rule: a request may name a date (`YYYY-MM-DD`); it gets the newest version released on or
before that date, the newest one for a later date, and the oldest for an earlier one. No header
gets the newest. A value that is not a date is a 400 naming the header and the versions. Every
answer under /api/v1/ says the version that answered in `Fluxomail-Version`.
"""

import re
from datetime import date

from fluxomail.api import problem_response

HEADER = "Fluxomail-Version"
# Every released version, oldest first. Today there is one.
VERSIONS = ("2025-09-01",)
LATEST = VERSIONS[-1]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The document and its viewer are not versioned.
_UNVERSIONED = ("/api/v1/openapi.json", "/api/v1/docs")


def resolve(value: str | None) -> str | None:
    """The version a header value asks for; None when the value is not a date."""
    if value is None or not value.strip():
        return LATEST
    value = value.strip()
    if not _DATE.match(value):
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        return None
    released = [version for version in VERSIONS if version <= value]
    return released[-1] if released else VERSIONS[0]


class ApiVersionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/v1/") or request.path.startswith(_UNVERSIONED):
            return self.get_response(request)
        version = resolve(request.headers.get(HEADER))
        if version is None:
            message = f"{HEADER} must be a date (YYYY-MM-DD); versions: {', '.join(VERSIONS)}"
            response = problem_response(
                request, 400, "validation_error", message, details={HEADER: [message]}
            )
            version = LATEST
        else:
            request.api_version = version
            response = self.get_response(request)
        response[HEADER] = version
        return response
