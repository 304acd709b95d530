"""The public tracking endpoints: GET /t/o/<token>.gif (opens) and GET /t/c/<token> (clicks).

Plain Django views: no API key, no DRF, one or two queries. Neither the client's IP address
nor its raw user agent is stored; an event keeps a coarse user-agent class and a `machine`
flag for opens and clicks that a proxy or scanner most likely made.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from fluxomail.api import problem_response
from sends import events, tracking
from sends.models import Event, Send

# Substrings of user agents (lower-cased) and the class they stand for. Mail-privacy proxies
# fetch every image of a mail on delivery, so their opens say nothing about a reader.
_PROXIES = (
    ("googleimageproxy", "google_image_proxy"),
    ("ggpht.com", "google_image_proxy"),
    ("yahoomailproxy", "yahoo_mail_proxy"),
    ("yahoo! slurp", "yahoo_mail_proxy"),
)
_BOTS = ("bot", "crawler", "spider", "preview", "scanner", "python-requests", "curl/", "wget/")


def user_agent_class(user_agent: str) -> str:
    """A coarse class of a user agent: a known proxy, a bot, a browser or mail app, unknown."""
    ua = user_agent.strip().lower()
    if not ua:
        return "unknown"
    for marker, name in _PROXIES:
        if marker in ua:
            return name
    if ua == "mozilla/5.0":
        # Apple Mail Privacy Protection fetches images with this bare user agent.
        return "apple_privacy_proxy"
    if any(marker in ua for marker in _BOTS):
        return "bot"
    if ua.startswith("mozilla/") or "outlook" in ua or "thunderbird" in ua:
        return "browser"
    return "unknown"


def _is_machine_class(agent_class: str) -> bool:
    return agent_class.endswith("_proxy") or agent_class == "bot"


def _no_store(response: HttpResponse) -> HttpResponse:
    # Every fetch must reach the service to be counted, and a click URL is never cached by a
    # proxy that could replay its redirect to someone else.
    response["Cache-Control"] = "no-store, max-age=0"
    response["Pragma"] = "no-cache"
    return response


def _not_found(request: HttpRequest) -> HttpResponse:
    return _no_store(problem_response(request, 404, "not_found", "Not found"))


def _within_recording_budget(kind: str, send: Send) -> bool:
    """At most TRACKING_MAX_EVENTS_PER_MINUTE recorded opens (or clicks) per send and minute.

    The URLs are public: without a cap, anyone holding one mail could insert rows without end
    and inflate its counts. Past the cap the pixel and the redirect still answer; only the
    event is not stored. A cache outage records everything (fail open, like rate limits).
    """
    key = f"trk:{kind}:{send.pk}:{int(time.time() // 60)}"
    try:
        if cache.add(key, 1, timeout=120):
            return True
        return cache.incr(key) <= settings.TRACKING_MAX_EVENTS_PER_MINUTE
    except Exception:
        return True


def _sent_at(send: Send):
    first_sent = (
        Event.objects.filter(send=send, type=Event.Type.SENT)
        .order_by("occurred_at", "id")
        .values_list("occurred_at", flat=True)
        .first()
    )
    return first_sent or send.created_at


@csrf_exempt  # a GET-only public endpoint: other methods get 405, not a CSRF page
@require_safe
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    send_public_id = tracking.read_open_token(token)
    send = Send.objects.filter(public_id=send_public_id).first() if send_public_id else None
    if send is None:
        return _not_found(request)
    if request.method == "GET" and _within_recording_budget("o", send):
        # HEAD is what link checkers send; only a real fetch of the image counts as an open.
        now = timezone.now()
        agent_class = user_agent_class(request.headers.get("User-Agent", ""))
        too_soon = now - _sent_at(send) < timedelta(seconds=settings.TRACKING_MACHINE_OPEN_SECONDS)
        events.record(
            send=send,
            type=Event.Type.OPENED,
            occurred_at=now,
            data={
                "userAgentClass": agent_class,
                "machine": too_soon or _is_machine_class(agent_class),
            },
        )
    response = HttpResponse(tracking.PIXEL_GIF, content_type="image/gif")
    return _no_store(response)


@csrf_exempt
@require_safe
def click(request: HttpRequest, token: str) -> HttpResponse:
    value = tracking.read_click_token(token)
    send = Send.objects.filter(public_id=value[0]).first() if value else None
    if send is None:
        return _not_found(request)
    _, position, url = value
    if request.method == "GET" and _within_recording_budget("c", send):
        agent_class = user_agent_class(request.headers.get("User-Agent", ""))
        events.record(
            send=send,
            type=Event.Type.CLICKED,
            data={
                "url": url,
                "position": position,
                "userAgentClass": agent_class,
                "machine": _is_machine_class(agent_class),
            },
        )
    # Not HttpResponseRedirect: the signed URL is the one destination, written as the mail
    # had it (only non-ASCII characters are encoded, as a browser would).
    response = HttpResponse(status=302)
    response["Location"] = tracking.redirect_location(url)
    return _no_store(response)
