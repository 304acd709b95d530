"""The API's one error shape: RFC 9457 members with Fluxomail's own fields.

Views raise; this module turns every exception, DRF's or Django's, into the shape of SPEC.md
section 4, served as application/problem+json or application/json as the client's Accept header
asks (error_media_type). Nothing of an unexpected exception (trace, SQL, message) reaches the
client.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation

from fluxomail.middleware import current_request_id

logger = logging.getLogger("fluxomail.api")

PROBLEM_CONTENT_TYPE = "application/problem+json"
JSON_CONTENT_TYPE = "application/json"
ERROR_CONTENT_TYPES = (JSON_CONTENT_TYPE, PROBLEM_CONTENT_TYPE)

TITLES = {
    "invalid_key": "Invalid API key",
    "missing_scope": "Missing scope",
    "tenant_paused": "Tenant paused",
    "validation_error": "Validation failed",
    "length_required": "Length required",
    "unsupported_media_type": "Unsupported media type",
    "payload_too_large": "Payload too large",
    "idempotency_key_reused": "Idempotency key reused",
    "idempotency_in_progress": "Idempotency key in progress",
    "rate_limited": "Rate limited",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "not_acceptable": "Not acceptable",
    "service_unavailable": "Service unavailable",
    "internal_error": "Internal error",
}


class ApiError(exceptions.APIException):
    """An API error with a stable code, a message, optional details, body extras and headers."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "validation_error"
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        self.message = message or self.message
        self.details = details or {}
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.message, self.code)


class InvalidKey(ApiError):
    status_code = 401
    code = "invalid_key"
    message = "Invalid API key"


class MissingScope(ApiError):
    status_code = 403
    code = "missing_scope"

    def __init__(self, scope: str):
        super().__init__(f"Forbidden: missing scope {scope}")


class TenantPaused(ApiError):
    status_code = 403
    code = "tenant_paused"
    message = "Tenant paused for this organization"


class ValidationFailed(ApiError):
    status_code = 400
    code = "validation_error"
    message = "Validation failed"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"
    message = "Not found"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"
    message = "Request body too large"


class LengthRequired(ApiError):
    status_code = 411
    code = "length_required"
    message = "A request body needs a Content-Length header"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"
    message = "Content-Type must be application/json"


class IdempotencyKeyReused(ApiError):
    status_code = 422
    code = "idempotency_key_reused"
    message = "Idempotency key was already used with a different request"


class IdempotencyInProgress(ApiError):
    status_code = 409
    code = "idempotency_in_progress"
    message = "A request with this idempotency key is still in progress"

    def __init__(self, **kwargs):
        kwargs.setdefault("headers", {})["Retry-After"] = "1"
        super().__init__(**kwargs)


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"
    message = "Rate limit exceeded"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "service_unavailable"
    message = "Service temporarily unavailable"


class InternalError(ApiError):
    status_code = 500
    code = "internal_error"
    message = "Internal error"


class DeliveryOutcomeUnknown(InternalError):
    """The provider may have the message (its answer was lost): nothing is sent again."""

    message = (
        "Email delivery outcome unknown: the mail server may have accepted the message, so it "
        "was not sent again; check before sending it anew"
    )


def problem_body(
    status_code: int, code: str, message: str, details: dict | None = None, **extra
) -> dict:
    body = {
        "type": f"/docs/errors/{code}",
        "title": TITLES.get(code, "Error"),
        "status": status_code,
        "detail": message,
        "code": code,
        "error": message,
        "message": message,
        "details": details or {},
        "requestId": current_request_id(),
    }
    body.update(extra)
    return body


def error_media_type(request: HttpRequest) -> str:
    """The media type of an error body (SPEC.md section 4): application/problem+json when the
    Accept header names it with a weight no lower than the one it gives application/json;
    application/json otherwise (no Accept, */*, application/json, anything else). The official
    JavaScript SDK, like many clients, reads an error body only when its type says
    application/json, so only a client that asks for problem+json gets it.
    """
    named = request.accepted_type(PROBLEM_CONTENT_TYPE)  # the most specific matching range
    if named is None or named.sub_type != "problem+json":
        return JSON_CONTENT_TYPE
    json_range = request.accepted_type(JSON_CONTENT_TYPE)
    if json_range is not None and json_range.quality > named.quality:
        return JSON_CONTENT_TYPE
    return PROBLEM_CONTENT_TYPE


def _weight_zero(media_range: str) -> bool:
    for param in media_range.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) == 0
            except ValueError:
                return False
    return False


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with application/problem+json standing for JSON: a client that names
    only the error media type gets its successes as application/json, not a 406."""

    # What nearly every client sends: DRF's answer to it, when the first renderer is JSON's, is
    # that renderer with its own media type. Given without parsing the header (a few percent of
    # a send's CPU); anything else is negotiated.
    _PLAIN_ACCEPT = frozenset({"*/*", JSON_CONTENT_TYPE})

    def select_renderer(self, request, renderers, format_suffix=None):
        if (
            request.META.get("HTTP_ACCEPT", "*/*") in self._PLAIN_ACCEPT
            and not format_suffix
            and renderers
            and renderers[0].media_type == JSON_CONTENT_TYPE
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], JSON_CONTENT_TYPE
        return super().select_renderer(request, renderers, format_suffix)

    def get_accept_list(self, request) -> list[str]:
        # A weight of 0 means "not acceptable" (RFC 9110 12.4.2); DRF ignores weights.
        accept = [item for item in super().get_accept_list(request) if not _weight_zero(item)]
        if error_media_type(request) == PROBLEM_CONTENT_TYPE:
            accept.append(JSON_CONTENT_TYPE)
        return accept


def problem_response(
    request: HttpRequest,
    status_code: int,
    code: str,
    message: str,
    details: dict | None = None,
    headers: dict | None = None,
    **extra,
) -> JsonResponse:
    """Every error answer, DRF's (exception_handler) and Django's (the 404/500 handlers)."""
    response = JsonResponse(
        problem_body(status_code, code, message, details, **extra),
        status=status_code,
        content_type=error_media_type(request),
        json_dumps_params={"separators": (",", ":")},
    )
    # The body's media type follows Accept: a shared cache must not serve one client's to another.
    patch_vary_headers(response, ["Accept"])
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _field_errors(detail) -> dict:
    """DRF's nested ValidationError detail as {field: [messages]}, named as clients write them:
    members joined by '.', list items by their position (`cc[1]`, `attachments[0].filename`)."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value, in_list: bool = False):
        if isinstance(value, dict):
            for key, inner in value.items():
                if in_list or (isinstance(key, int) and prefix):
                    name = f"{prefix}[{key}]"
                else:
                    name = f"{prefix}.{key}" if prefix else str(key)
                walk(name, inner, in_list=False)
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                out.setdefault(prefix or "body", []).extend(str(v) for v in value)
            else:
                for index, inner in enumerate(value):
                    walk(f"{prefix}[{index}]" if prefix else str(index), inner)
        else:
            out.setdefault(prefix or "body", []).append(str(value))

    walk("", detail)
    return out


def _validation_message(details: dict) -> str:
    """The top-level message names the first field and its reason, and how many more there are:
    `to: Enter a valid email address.`; several: `cc[1]: Enter a valid email address. (and 2
    more fields)`. Missing required fields are named together first."""
    missing = sorted(
        name for name, errors in details.items() if "This field is required." in errors
    )
    if missing:
        return "Missing required fields: " + ", ".join(missing)
    if not details:
        return "Validation failed"
    name, errors = next(iter(details.items()))
    message = f"{name}: {errors[0] if errors else 'invalid'}"
    others = len(details) - 1
    if others:
        message += f" (and {others} more field{'s' if others > 1 else ''})"
    return message


def _convert(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, exceptions.ValidationError):
        details = _field_errors(exc.detail)
        return ValidationFailed(_validation_message(details), details=details)
    if isinstance(exc, exceptions.ParseError):
        message = "Malformed JSON body"
        return ValidationFailed(message, details={"body": [message]})
    if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
        return InvalidKey()
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return UnsupportedMediaType()
    if isinstance(exc, exceptions.MethodNotAllowed):
        error = ApiError(str(exc.detail))
        error.status_code, error.code = 405, "method_not_allowed"
        return error
    if isinstance(exc, exceptions.NotAcceptable):
        error = ApiError("Not acceptable")
        error.status_code, error.code = 406, "not_acceptable"
        return error
    if isinstance(exc, Http404 | exceptions.NotFound):
        return NotFound()
    if isinstance(exc, exceptions.Throttled):
        return RateLimited()
    if isinstance(exc, exceptions.PermissionDenied | DjangoPermissionDenied):
        error = ApiError("Forbidden")
        error.status_code, error.code = 403, "missing_scope"
        return error
    if isinstance(exc, exceptions.APIException):
        error = ApiError(str(exc.detail))
        error.status_code = exc.status_code
        error.code = "internal_error" if exc.status_code >= 500 else "validation_error"
        return error
    # Anything else is a bug or a broken dependency: log its type (SafeFormatter hides the
    # traceback by default) and give the client nothing but the request id.
    logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return InternalError()


def exception_handler(exc: Exception, context: dict) -> JsonResponse:
    """DRF's EXCEPTION_HANDLER: every exception raised in an API view ends here."""
    error = _convert(exc)
    headers = dict(error.headers)
    if error.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    response = problem_response(
        context["request"],
        error.status_code,
        error.code,
        error.message,
        error.details,
        headers,
        **error.extra,
    )
    view = context.get("view")
    if view is not None and hasattr(view, "finalize_error_response"):
        view.finalize_error_response(context["request"], response, error)
    return response


def _is_api_path(path: str) -> bool:
    return path.startswith(("/api/", "/healthz", "/readyz", "/t/"))


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Catch-all for unknown paths under /api/ and /t/: a problem body even with DEBUG on."""
    return problem_response(request, 404, "not_found", "Not found")


def handler404(request, exception=None):
    if _is_api_path(request.path):
        return problem_response(request, 404, "not_found", "Not found")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if _is_api_path(request.path):
        return problem_response(request, 500, "internal_error", "Internal error")
    from django.views.defaults import server_error

    return server_error(request)


def handler400(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return problem_response(request, 413, "payload_too_large", "Request body too large")
    if _is_api_path(request.path):
        return problem_response(request, 400, "validation_error", "Bad request")
    from django.views.defaults import bad_request

    return bad_request(request, exception)
