"""The ESPs' tracking webhooks: django-anymail's own views, each behind one guard.

The paths are anymail's (`<esp>/tracking/`, Mandrill's `mandrill/`), mounted under
/webhooks/anymail/ (README "Provider webhooks"). anymail checks each ESP's signature and turns
its payload into tracking signals (sends/provider_events.py records them, a request's events
together: one post may carry thousands); the guard decides what anymail would leave to
Django's error handling, so that no payload can cause a 500:

- no ANYMAIL_WEBHOOK_SECRET: 404, the webhooks are off (open ones would take anyone's bounces);
- missing or wrong basic auth: 401 with a Basic challenge (Amazon SNS sends its credentials
  only after one);
- an ESP signature that does not verify: 403;
- a payload anymail cannot read: 400; a body over MAX_REQUEST_BYTES: 413;
- the database unreachable, or anymail misconfigured (a missing signing key or package, an
  ESP that posts another kind of webhook here): 503 with Retry-After and a log line naming it,
  so that the ESP retries once it is fixed (events are recorded once however often they come).
"""

import functools
import logging

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.utils import get_anymail_setting, get_request_basic_auth
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from fluxomail.api import problem_response
from sends import provider_events

logger = logging.getLogger("fluxomail.provider_webhooks")

app_name = "anymail"

RETRY_AFTER_SECONDS = "60"


def webhook_secrets() -> list[str]:
    """The "user:password" pairs the ESPs may use (anymail's WEBHOOK_SECRET setting)."""
    value = get_anymail_setting("webhook_secret", default=[])
    return [value] if isinstance(value, str) and value else list(value or [])


def _authorized(request: HttpRequest, secrets: list[str]) -> bool:
    sent = get_request_basic_auth(request) or ""
    return any(constant_time_compare(sent, secret) for secret in secrets)


def guarded(view):
    @csrf_exempt
    @functools.wraps(view)
    def guard(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        secrets = webhook_secrets()
        if not secrets:
            return problem_response(request, 404, "not_found", "Not found")
        # HEAD records nothing: some ESPs check a webhook URL with it when it is configured.
        if request.method != "HEAD" and not _authorized(request, secrets):
            return problem_response(
                request,
                401,
                "invalid_key",
                "Missing or wrong webhook credentials",
                headers={"WWW-Authenticate": 'Basic realm="fluxomail webhooks"'},
            )
        try:
            # A batch's outcomes are recorded together, before the answer.
            with provider_events.batched():
                return view(request, *args, **kwargs)
        except AnymailWebhookValidationFailure:
            logger.warning("webhook %s: the ESP's signature did not verify", request.path)
            return problem_response(request, 403, "invalid_key", "Webhook signature check failed")
        except RequestDataTooBig:
            return problem_response(request, 413, "payload_too_large", "Request body too large")
        except (OperationalError, InterfaceError, ImproperlyConfigured) as exc:
            # anymail's configuration errors name the setting or package, never its value.
            detail = str(exc) if isinstance(exc, ImproperlyConfigured) else "database unavailable"
            logger.error("webhook %s not handled: %s", request.path, detail[:500])
            return problem_response(
                request,
                503,
                "service_unavailable",
                "Service temporarily unavailable",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        except Exception as exc:
            # Whatever anymail raised reading the payload: the ESP sent something unreadable.
            logger.warning("webhook %s: unreadable payload (%s)", request.path, type(exc).__name__)
            return problem_response(request, 400, "validation_error", "Malformed webhook payload")

    return guard


def _is_tracking(pattern: URLPattern) -> bool:
    # Mandrill posts tracking and inbound events to one combined URL.
    return pattern.name.endswith("_tracking_webhook") or pattern.name == "mandrill_webhook"


urlpatterns = [
    URLPattern(pattern.pattern, guarded(pattern.callback), name=pattern.name)
    for pattern in anymail_urls.urlpatterns
    if _is_tracking(pattern)
]
