"""Keeps credentials out of every log line: query strings are redacted before a record is written.

The event stream takes an API key or a short-lived token in its `token` query parameter (the
JavaScript SDK's EventSource cannot send headers), and every server logs request lines: Django's
runserver (logger `django.server`), gunicorn's access and error logs (gunicorn.conf.py) and
uvicorn's (fluxomail/asgi.py). `RedactSecrets` rewrites, in a record's message and arguments,
the value of every query parameter whose name (percent-decoded, case-folded) is credential-like,
and any API key or token wherever it appears. Without Django imports: gunicorn's master loads it.
"""

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Parameter names whose values are credentials, compared percent-decoded and lower-cased.
SECRET_PARAMS = frozenset(
    {"token", "access_token", "api_key", "apikey", "api-key", "key", "x-api-key", "secret"}
)
# A query string in a request line or URL: from "?" to whitespace, a quote or the line's end.
_QUERY = re.compile(r"\?([^\s\"']*)")
# An API key (flx_<id>_<secret>; its public prefix alone is no secret) or a short-lived token
# (flxt_...), percent-encoded or not.
_CREDENTIAL = re.compile(
    r"flx(?:_|%5[Ff])[A-Za-z0-9]{8}(?:_|%5[Ff])[A-Za-z0-9]{16,}|flxt(?:_|%5[Ff])[\w.:%-]{16,}"
)


def _redact_query(match: re.Match) -> str:
    parts = []
    for part in re.split(r"([&;?])", match.group(1)):
        name, equals, _ = part.partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "?" + "".join(parts)


def redact(text: str) -> str:
    """`text` with credential-like query values and every key or token replaced."""
    if "?" in text:
        text = _QUERY.sub(_redact_query, text)
    if "flx" in text:
        text = _CREDENTIAL.sub(REDACTED, text)
    return text


def _clean(value):
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """A logging filter that redacts the message and its arguments in place (tuple or mapping,
    as gunicorn's access log passes them), so that any format or formatter still applies."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean(value) for value in args)
        elif isinstance(args, dict):
            # gunicorn's atoms are a dict subclass with its own lookups: change it in place.
            for name, value in list(args.items()):
                if isinstance(value, str):
                    args[name] = redact(value)
        return True


def install(*logger_names: str) -> None:
    """Adds the filter to loggers that other code configures (the servers' own), once each."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
