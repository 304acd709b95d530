"""How the API reads a request body: JSON in UTF-8, measured before a single object is built.

Python's JSON parser is C and linear in bytes, but building objects for millions of tiny values
(`[[],[],…]`, 300 000 unknown fields) costs seconds, and deep nesting overflows the stack. So the
body's shape is measured first, by operations that run in C (find, json's string scanner,
translate, count; a Python loop only per string, and there may be at most 2 × `max_values`):
at most `max_depth` levels and `max_values` values, else a 400 naming `body`. Every later step
(fingerprint, validation) then works on a bounded document.

Strings must be Unicode text (I-JSON, RFC 7493): a `\\ud800` escape without its pair is a 400
naming the field, since no mail, database or JSON answer can carry it.
"""

import codecs
import json
import re
from json.decoder import scanstring

from django.conf import settings
from django.utils.http import parse_header_parameters
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.utils.json import strict_constant

from fluxomail.api import LengthRequired, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

_BRACKETS = b"[]{}"
_OPENING = b"[{"
_NOT_BRACKETS = bytes(set(range(256)) - set(_BRACKETS))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_MESSAGE = "Must not contain unpaired surrogates (\\ud800 to \\udfff)."


def _body_error(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"body": [message]})


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the checks above; charsets other than UTF-8 are a 415."""

    max_depth = 32
    max_values = 1_000  # a valid send has under 200

    def parse(self, stream, media_type=None, parser_context=None):
        _, params = parse_header_parameters(media_type or "")
        if "charset" in params:
            try:
                utf8 = codecs.lookup(params["charset"]).name == "utf-8"
            except LookupError:
                utf8 = False
            if not utf8:
                raise UnsupportedMediaType(
                    "Unsupported charset: JSON bodies must be UTF-8 "
                    "(Content-Type: application/json; charset=utf-8, or no charset)"
                )
        raw = stream.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _body_error("The body is not valid UTF-8.") from None
        self._check_shape(text)
        try:
            data = json.loads(text, parse_constant=strict_constant if self.strict else None)
        except ValueError:
            raise ParseError() from None
        if _SURROGATE_ESCAPE.search(raw):
            _refuse_surrogates(data)
        return data

    def _check_shape(self, text: str) -> None:
        outside = self._outside_strings(text).encode()
        brackets = outside.translate(None, _NOT_BRACKETS)
        # Depth over the first brackets only: past them, the value count below refuses anyway.
        depth = 0
        for byte in brackets[: 2 * self.max_values + 2]:
            depth += 1 if byte in _OPENING else -1
            if depth > self.max_depth:
                raise _body_error(
                    f"The JSON body is nested too deeply (at most {self.max_depth} levels)."
                )
        if 1 + outside.count(b",") + brackets.count(b"[") + brackets.count(b"{") > self.max_values:
            raise self._too_many()

    def _outside_strings(self, text: str) -> str:
        """The JSON text without its strings (exact for valid JSON; the parser refuses the rest)."""
        outside, start, strings = [], 0, 0
        while (opening := text.find('"', start)) >= 0:
            strings += 1
            if strings > 2 * self.max_values:  # values and member names
                raise self._too_many()
            outside.append(text[start:opening])
            closing = text.find('"', opening + 1)
            if closing >= 0 and text.find("\\", opening, closing) < 0:
                start = closing + 1  # no escape inside: the next quote closes it
                continue
            try:  # escapes: json's own C scanner finds the closing quote
                start = scanstring(text, opening + 1)[1]
            except ValueError:  # unterminated, or a bad escape
                raise ParseError() from None
        outside.append(text[start:])
        return "".join(outside)

    def _too_many(self) -> ValidationFailed:
        return _body_error(f"The JSON body has too many values (at most {self.max_values}).")


def _refuse_surrogates(data) -> None:
    """400 naming each top-level field whose name or value holds a lone surrogate."""
    fields = data.items() if isinstance(data, dict) else [("body", data)]
    errors = {}
    for name, value in fields:
        if _SURROGATE.search(name):
            errors["body"] = [SURROGATE_MESSAGE]
        elif _SURROGATE.search(json.dumps(value, ensure_ascii=False)):
            errors[name] = [SURROGATE_MESSAGE]
    if errors:
        raise ValidationError(errors)


def read_body(request) -> None:
    """Checks the body's announced size (413) and reads a chunked body without Content-Length.

    Django reads only Content-Length bytes, so a chunked body looked empty. It can be read when
    the server de-chunks it and ends the stream (`wsgi.input_terminated`, set by gunicorn);
    behind any other server reading could block, so the answer is 411.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    meta = request.META
    if meta.get("CONTENT_LENGTH"):
        try:
            length = int(meta["CONTENT_LENGTH"])
        except ValueError:
            length = 0
        if length > limit:  # refused before a byte is read
            raise PayloadTooLarge()
        return
    if not meta.get("HTTP_TRANSFER_ENCODING"):
        return
    if not meta.get("wsgi.input_terminated"):
        raise LengthRequired()
    body = meta["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge()
    # What Django's HttpRequest.body returns and what DRF reads to know there is a body.
    request._request._body = body
    meta["CONTENT_LENGTH"] = str(len(body))
