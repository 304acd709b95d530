"""Request ids: one per request, on every response and in every log line of the request."""

import contextvars
import logging
import re
import secrets

from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> None:
    """The request id of the work at hand, for code that runs outside a request (tasks)."""
    _request_id.set(value)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        client_id = request.headers.get("X-Request-Id", "")
        request_id = client_id if _CLIENT_ID.match(client_id) else new_request_id()
        request.request_id = request_id
        # Not reset on the way out: Django logs the response ("Not Found: ...") after the
        # middleware chain returns, and that line must carry the id too. Each request sets it.
        _request_id.set(request_id)
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        # The official JavaScript SDK reads this name.
        response["Fluxomail-Request-Id"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class SafeFormatter(logging.Formatter):
    """Logs an exception's type only: its text and traceback may carry SQL, data or secrets."""

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        if settings.LOG_TRACEBACKS:
            return super().formatException(ei)
        return f"{ei[0].__name__} (traceback hidden; set LOG_TRACEBACKS=true to log it)"

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return stack_info if settings.LOG_TRACEBACKS else ""


class SafeJsonFormatter(JsonFormatter):
    """LOG_FORMAT=json: one JSON object per line (time, level, logger, request id, message),
    with SafeFormatter's rule for exceptions (their type only, unless LOG_TRACEBACKS)."""

    formatException = SafeFormatter.formatException  # noqa: N815
    formatStack = SafeFormatter.formatStack  # noqa: N815
