"""`make run`'s local webhook receiver: a stdlib HTTP server on 127.0.0.1 that the demo's
webhook endpoint points at (fluxomail/devserver.py runs it in a thread).

Each POST is checked by `fluxomail_event`, the very function the README gives customers
("Outbound webhooks", "Verify in Python"; a test holds the two to the same text), and logged as
one line: the event type, the envelope id, the send it is about, and whether the signature was
good. A good one is answered 200, a bad one 400 (as a customer's receiver would).
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# An envelope is a few KB; anything far larger is not a Fluxomail webhook.
MAX_BODY = 1024 * 1024


def fluxomail_event(raw_body: bytes, headers, secret: str, tolerance: int = 300) -> dict:
    """The event of one webhook request; ValueError unless `secret` signed it recently.
    `headers`: the request's headers by lower-case name (Django's request.headers, Flask's
    and http.server's ignore the case)."""
    expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    given = headers.get("fluxomail-signature") or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ValueError("bad Fluxomail-Signature")
    # Standard Webhooks: the id and the time are signed too, so an old request cannot be replayed.
    event_id = headers.get("webhook-id") or ""
    timestamp = headers.get("webhook-timestamp") or ""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError(f"webhook-timestamp missing or more than {tolerance} s from now")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{event_id}.{timestamp}.".encode() + raw_body
    v1 = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = (headers.get("webhook-signature") or "").split()
    if not any(hmac.compare_digest(s.encode(), v1.encode()) for s in signatures):
        raise ValueError("bad webhook-signature")
    return json.loads(raw_body)


def _printable(value) -> str:
    """A short, printable form of a value from the request, for the one log line."""
    if not isinstance(value, str) or not value:
        return "?"
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in value[:60])


class Receiver:
    """Listens on 127.0.0.1:`port` (0: a free port) from construction on; `start()` serves in a
    daemon thread, `stop()` ends it. `report(line)` is called with one line per request."""

    def __init__(self, port: int, report: Callable[[str], None]):
        self.secret = ""
        self.report = report
        # Send ids with an outcome (any event but email.delayed) that arrived well signed.
        self.settled: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    self._answer(413)
                    return
                ok = receiver.received(self.rfile.read(length), self.headers)
                self._answer(200 if ok else 400)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass  # received() writes the one line of each request

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    def received(self, body: bytes, headers) -> bool:
        try:
            event = fluxomail_event(body, headers, self.secret)
            verdict = "signature ok"
        except ValueError as exc:
            verdict = f"signature BAD ({exc})"
            event = None
        shown = event
        if shown is None:
            try:
                shown = json.loads(body)
            except ValueError:
                shown = {}
        if not isinstance(shown, dict):
            shown = {}
        data = shown.get("data") if isinstance(shown.get("data"), dict) else {}
        send_id = _printable(data.get("sendId"))
        about = f" {send_id}" if send_id != "?" else ""
        kind, event_id = _printable(shown.get("type")), _printable(shown.get("id"))
        self.report(f"webhook received: {kind} {event_id}{about}: {verdict}")
        if event is not None and about and kind != "email.delayed":
            self.settled.add(send_id)
        return event is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
