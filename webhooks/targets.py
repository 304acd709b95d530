"""Where a webhook may go, and the POST itself (SPEC.md section 11).

The SSRF guard: unless WEBHOOK_ALLOW_PRIVATE_TARGETS is on (the default outside production), a
URL whose host resolves to an address that is not globally routable (loopback, private,
link-local and so the cloud metadata address 169.254.169.254, carrier-grade NAT, reserved,
multicast, IPv4-mapped forms of these) is refused, at creation and again at every attempt. The
attempt connects to the very address that was checked (the host name is sent as `Host` and
used for TLS), so a DNS answer that changes between the check and the connection (rebinding)
cannot redirect it. Redirects are never followed: a 3xx is a failed attempt.
"""

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

RESPONSE_BYTES = 1024


class UnsafeTarget(Exception):
    """The URL may not be called; the message says why (shown to the endpoint's owner)."""


def allowed_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> None:
    """Raises UnsafeTarget for a URL that is not http(s) with a host, or carries credentials."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:  # "http://[", a port out of range, ...
        raise UnsafeTarget("The URL is not valid.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("The URL must be http:// or https:// with a host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("The URL may not carry a user name or password.")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise UnsafeTarget("The URL may not contain spaces or control characters.")


def check_new_url(url: str) -> None:
    """The checks of a URL given for an endpoint (the guard resolves it when it is on)."""
    check_url(url)
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        resolve(url)


def resolve(url: str) -> str:
    """The address to connect to for `url`, checked by the guard when it is on."""
    check_url(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise UnsafeTarget(f"The host {parts.hostname} does not resolve.") from None
    addresses = [info[4][0] for info in infos]
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        # Every answer must be public: otherwise the next resolution may pick the private one.
        refused = [address for address in addresses if not allowed_address(address)]
        if refused:
            raise UnsafeTarget(
                f"The host {parts.hostname} resolves to {refused[0]}, which is not a public "
                "address (loopback, private, link-local and metadata addresses are refused)."
            )
    return addresses[0]


@dataclass
class Answer:
    status_code: int | None
    body: str
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST to `url` at the checked address; never raises, never follows a redirect."""
    started = time.monotonic()

    def answer(status_code=None, text="", error="") -> Answer:
        latency = int((time.monotonic() - started) * 1000)
        return Answer(status_code, text, latency, error[:500])

    try:
        address = resolve(url)
    except UnsafeTarget as exc:
        return answer(error=f"Refused: {exc}")
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    timeout = urllib3.Timeout(total=settings.WEBHOOK_TIMEOUT_SECONDS)
    options = (
        {"server_hostname": parts.hostname, "assert_hostname": parts.hostname} if https else {}
    )
    pool_class = urllib3.HTTPSConnectionPool if https else urllib3.HTTPConnectionPool
    pool = pool_class(address, port, timeout=timeout, retries=False, maxsize=1, **options)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": parts.netloc},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        try:
            text = response.read(RESPONSE_BYTES).decode("utf-8", "replace")
        finally:
            response.release_conn()
        return answer(response.status, text)
    except urllib3.exceptions.NewConnectionError as exc:  # a TimeoutError subclass: first
        return answer(error=f"Connection failed: {_why(exc)}")
    except urllib3.exceptions.TimeoutError:
        return answer(error=f"Timed out after {settings.WEBHOOK_TIMEOUT_SECONDS:g} s")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return answer(error=f"Connection failed: {_why(exc)}")
    finally:
        pool.close()


def _why(exc: BaseException) -> str:
    """The operating system's reason (e.g. "Connection refused"), never the exception's text."""
    for cause in (exc, exc.__cause__, exc.__context__, *getattr(exc, "args", ())):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return type(exc).__name__
