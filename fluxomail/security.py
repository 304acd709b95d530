"""Content-Security-Policy for the dashboard's pages and the sandboxed mail preview."""

import secrets
from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse

# Dashboard pages: everything from our own origin; inline <style> only with this response's
# nonce (the charts' SVG carries it); no inline script at all; frames only from ourselves (the
# mail preview).
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Mail HTML as sent: a sandbox (unique origin, no scripts, no forms), no network at all but
# inline images and styles, framable by our own pages only.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)


def dashboard_csp(view: Callable) -> Callable:
    """Gives the request a fresh `csp_nonce` and the response the dashboard's CSP."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        request.csp_nonce = secrets.token_urlsafe(16)
        response = view(request, *args, **kwargs)
        response.setdefault(
            "Content-Security-Policy", DASHBOARD_CSP.format(nonce=request.csp_nonce)
        )
        return response

    return wrapper


def preview_csp(view: Callable) -> Callable:
    """The preview's CSP, and X-Frame-Options SAMEORIGIN instead of the site-wide DENY."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = PREVIEW_CSP
        response["X-Frame-Options"] = "SAMEORIGIN"
        return response

    return wrapper
