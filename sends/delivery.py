"""Hands a rendered message to Django's email backend.

`PooledSMTPBackend` keeps SMTP connections open across sends within a worker process (a new
TCP + EHLO (+ STARTTLS + AUTH) handshake per mail costs more than the mail itself). Other backends
(console, locmem, django-anymail's ESPs) go through get_connection() as usual.
"""

import functools
import logging
import smtplib
import threading
from dataclasses import dataclass, field
from email.utils import make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.mail.message import sanitize_address

from accounts.models import Organization
from fluxomail.addresses import is_bare, to_ascii
from sends import mime
from sends.models import Message

logger = logging.getLogger("fluxomail.delivery")

# Failures of a pooled connection that was fine when last used: the server closed it (idle
# timeout, restart) or the socket broke. Worth one reconnect, if DATA had not gone out yet;
# anything else is the answer.
_STALE_CONNECTION = (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError)
MAX_IDLE_CONNECTIONS = 16


def _is_stale(exc: BaseException) -> bool:
    # 421 to MAIL FROM: the server is closing the (idle) session; nothing was accepted yet.
    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 421:
        return True
    return isinstance(exc, _STALE_CONNECTION)


class UncertainDelivery(Exception):
    """The session failed after DATA went out and before the server's answer to it arrived
    (timeout, closed connection): the server may have accepted the message. Never resent."""

    def __init__(self, cause: BaseException):
        super().__init__(type(cause).__name__)
        self.cause = cause


class _DataTracking:
    """An SMTP session that tells whether DATA went out since `data_sent` was last cleared."""

    data_sent = False

    def data(self, msg):
        self.data_sent = True
        return super().data(msg)


class _SMTP(_DataTracking, smtplib.SMTP):
    pass


class _SMTPSSL(_DataTracking, smtplib.SMTP_SSL):
    pass


@functools.lru_cache(maxsize=256)
def _sanitized(address: str, encoding: str) -> str:
    # Cached: the senders' From values repeat (one per organization); a pure function of its
    # arguments, so an entry answers any caller alike.
    return sanitize_address(address, encoding)


def envelope_address(address: str, encoding: str) -> str:
    """sanitize_address(address, encoding), the SMTP envelope's form of a header address: a
    bare address is its own (nothing to quote, encode or punycode), without running email's
    header parser over it, which costs more than the SMTP session's own work."""
    if is_bare(address):
        return address
    return _sanitized(address, encoding)


class PooledSMTPBackend(SMTPBackend):
    """Django's SMTP backend with connections kept open and shared within the process.

    Idle connections wait in a pool per server and credentials; a send checks one out (or opens
    one), so concurrent threads never share a connection. A pooled connection that turns out to
    be dead before DATA is replaced once; a failure after DATA raises UncertainDelivery.
    Timeout: EMAIL_TIMEOUT.
    """

    _pools: dict[tuple, list] = {}
    _pools_lock = threading.Lock()

    @property
    def connection_class(self):
        return _SMTPSSL if self.use_ssl else _SMTP

    @property
    def _pool_key(self) -> tuple:
        return (self.host, self.port, self.username, self.use_tls, self.use_ssl)

    def _checkout(self) -> tuple[smtplib.SMTP, bool]:
        with self._pools_lock:
            pool = self._pools.get(self._pool_key)
            if pool:
                return pool.pop(), True
        return self._connect(), False

    def _connect(self) -> smtplib.SMTP:
        self.connection = None
        super().open()
        connection, self.connection = self.connection, None
        return connection

    def open(self) -> bool:
        # Connections are checked out per message; `with connection:` callers need no socket.
        return False

    def _checkin(self, connection: smtplib.SMTP) -> None:
        with self._pools_lock:
            pool = self._pools.setdefault(self._pool_key, [])
            if len(pool) < MAX_IDLE_CONNECTIONS:
                pool.append(connection)
                return
        # More idle connections than a worker's usual concurrency: let this one go.
        self._discard(connection)

    def _discard(self, connection: smtplib.SMTP) -> None:
        try:
            connection.close()
        except OSError:
            pass

    def send_messages(self, email_messages) -> int:
        if not email_messages:
            return 0
        sent = 0
        # self.connection is per instance: one instance shared by threads sends one at a time.
        with self._lock:
            for message in email_messages:
                if self._send_one(message):
                    sent += 1
        return sent

    def _send_one(self, message) -> bool:
        connection, reused = self._checkout()
        try:
            try:
                result = self._send_on(connection, message)
            except OSError as exc:  # smtplib's errors are OSErrors too
                # Only a failure before DATA may be retried: from DATA on the server may hold
                # the message already, and a second session would deliver it twice.
                if not (reused and _is_stale(exc) and not connection.data_sent):
                    raise
                self._discard(connection)
                logger.info("pooled SMTP connection was closed; reconnecting once")
                connection = None  # discarded: not to be discarded again if _connect fails
                connection = self._connect()
                result = self._send_on(connection, message)
        except BaseException as exc:
            self.connection = None
            if connection is None:
                raise
            self._discard(connection)
            # After DATA, a reply (SMTPDataError: 4xx/5xx) is an answer; no reply at all is not.
            answered = isinstance(exc, smtplib.SMTPResponseException)
            if connection.data_sent and isinstance(exc, OSError) and not answered:
                raise UncertainDelivery(exc) from exc
            raise
        self.connection = None
        self._checkin(connection)
        return bool(result)

    def _send_on(self, connection: smtplib.SMTP, message) -> bool:
        self.connection = connection
        connection.data_sent = False
        return self._send(message)

    def _send(self, email_message) -> bool:
        # Django's _send, with the envelope's addresses from envelope_address() (the same
        # values, without parsing each one as a header), the recipients listed once, and the
        # message written by mime.message_bytes (directly, for the usual send).
        recipients = email_message.recipients()
        if not recipients:
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        from_email = envelope_address(email_message.from_email, encoding)
        envelope_to = [envelope_address(address, encoding) for address in recipients]
        try:
            self.connection.sendmail(from_email, envelope_to, mime.message_bytes(email_message))
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True

    def close(self) -> None:
        # Connections stay pooled; close_all() closes them (tests, shutdown).
        self.connection = None

    @classmethod
    def close_all(cls) -> None:
        with cls._pools_lock:
            pools, cls._pools = cls._pools, {}
        for pool in pools.values():
            for connection in pool:
                try:
                    connection.quit()
                except (OSError, smtplib.SMTPException):
                    connection.close()


def identity(organization: Organization) -> tuple[str, str]:
    """(display name, address) of the organization's sending identity, else the default.

    The address's domain is in ASCII (IDNA 2008): left to Django, an internationalised one
    would be encoded with IDNA 2003 (`faß.de` as `fass.de`, another domain).
    """
    if organization.from_email:
        name, address = organization.from_name, organization.from_email
    else:
        name, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    local, at, domain = address.rpartition("@")
    try:
        return name, f"{local}{at}{to_ascii(domain)}"
    except UnicodeError:
        return name, address  # refused by IDNA 2008: as configured


def identity_domain(organization: Organization) -> str:
    return identity(organization)[1].rpartition("@")[2]


# Django's own backends by module, as people name them.
_DJANGO_BACKENDS = {
    "django.core.mail.backends.smtp": "smtp",
    "django.core.mail.backends.console": "console",
    "django.core.mail.backends.locmem": "locmem",
    "django.core.mail.backends.filebased": "file",
    "django.core.mail.backends.dummy": "dummy",
}


def provider_name(connection) -> str:
    """A short name for the provider a backend hands mail to (`smtp`, `console`, `postmark`,
    …), as the timeline and the pages show it, instead of the backend's class path."""
    esp_name = getattr(connection, "esp_name", None)  # django-anymail's ESP backends
    if esp_name:
        return str(esp_name).lower().replace(" ", "-")
    if isinstance(connection, SMTPBackend):
        return "smtp"
    cls = type(connection)
    return _DJANGO_BACKENDS.get(cls.__module__, cls.__qualname__.lower())


@dataclass
class Delivery:
    """What a delivery attempt produced (message_id even on failure: it was generated first)."""

    message_id: str
    provider: str
    headers: dict = field(default_factory=dict)
    envelope_to: list = field(default_factory=list)
    error: str = ""


def safe_error(exc: BaseException) -> str:
    """A short description of a provider failure: class and SMTP code/text, never secrets."""
    if isinstance(exc, UncertainDelivery):
        return f"{safe_error(exc.cause)} (after DATA: the server may have accepted the message)"
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [
            f"{code} {reply.decode('utf-8', 'replace') if isinstance(reply, bytes) else reply}"
            for code, reply in list(exc.recipients.values())[:3]
        ]
        return f"{name}: " + "; ".join(parts)
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"{name}: {exc.smtp_code} {text}"[:500]
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib's own wording ("Connection unexpectedly closed: timed out"), no data in it.
        return f"{name}: {exc}"[:200] if str(exc) else name
    if isinstance(exc, TimeoutError):
        return name
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"[:500]
    # ESP and other errors: the class only; their text can echo request data or credentials.
    status = getattr(exc, "status_code", None)
    return f"{name} (status {status})" if status else name


def failure_data(exc: BaseException, reason: str) -> dict:
    """The members of an `email.failed` event (SPEC section 7): the reason and, when an SMTP
    server answered, its code and host."""
    data: dict = {"reason": reason}
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code = next(iter(exc.recipients.values()))[0]
    if isinstance(code, int) and code > 0:
        data["smtpCode"] = code
        if settings.EMAIL_HOST:
            data["mtaHost"] = settings.EMAIL_HOST
    return data


def new_message_id(organization: Organization) -> str:
    return make_msgid(domain=identity_domain(organization))


def deliver(message: EmailMultiAlternatives) -> Delivery:
    """Sends one message; returns the provider's message id. Raises the provider's error, or
    UncertainDelivery when the provider may have the message."""
    connection = get_connection()
    message.connection = connection
    message.send(fail_silently=False)
    message_id = message.extra_headers.get("Message-ID", "")
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id:
        # django-anymail: the ESP's id is the one its webhooks will carry. With per-recipient
        # ids (a set) the ids are joined in a stable order.
        ids = status.message_id
        message_id = joined_ids(ids) if isinstance(ids, set) else str(ids)
    return Delivery(message_id=message_id, provider=provider_name(connection))


def joined_ids(ids: set) -> str:
    """Per-recipient ids in a stable order (a refused recipient has none), as many whole ids as
    Message.provider_message_id holds: a value too long for it would fail the bookkeeping of a
    message already sent."""
    joined = ""
    for value in sorted(str(value) for value in ids if value is not None):
        longer = f"{joined},{value}" if joined else value
        if len(longer) > Message.PROVIDER_ID_MAX_LENGTH:
            break
        joined = longer
    return joined
