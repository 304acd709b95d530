"""Open and click tracking: the pixel, the rewritten links, and their signed tokens.

The HTML a customer sends must reach the reader unchanged apart from the links and the pixel:
entities, comments, Outlook's conditional comments, the doctype, attribute quoting and
whitespace all stay byte for byte. Serialising an lxml tree would normalise all of those, so
the document is read twice and written never:

* lxml (libxml2, the parser premailer already uses) gives the document's structure: which
  elements are links, their text (to spot unsubscribe links), and where they sit;
* a small scanner that follows the HTML tokenizer's rules for tags, quoted attributes, comments
  and raw-text elements gives the exact character offsets of each `<a>` start tag and its
  attributes, so that only the `href` value and the opt-out attribute are spliced.

The two readings must agree on the links (same number, same source lines) before any link is
changed; when they do not (badly broken markup), links are left as written, which loses click
tracking for that mail but never breaks a link.
"""

import html as html_lib
import logging
import re
from dataclasses import dataclass, field
from html.entities import html5 as HTML5_ENTITIES

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.encoding import iri_to_uri
from lxml import etree
from lxml import html as lxml_html

from fluxomail.addresses import to_ascii

logger = logging.getLogger("fluxomail.tracking")

CLICK_SALT = "fluxomail.click"
OPEN_SALT = "fluxomail.open"
OPT_OUT_ATTRIBUTE = "data-fluxomail-track"

# Elements whose content the tokenizer reads as text up to the matching end tag: a "<a" inside
# them is not a link.
_RAW_TEXT = frozenset(
    {"script", "style", "xmp", "iframe", "noembed", "noframes", "textarea", "title"}
)
_SPACE = " \t\n\r\f"
# What browsers strip around a URL (C0 controls and space) and delete inside it (tab, newline).
_URL_STRIP = "".join(chr(c) for c in range(0x21))
_URL_DELETE = str.maketrans("", "", "\t\n\r")
# What browsers percent-encode inside a URL (the WHATWG URL standard's C0 control percent-encode
# set, ASCII part): C0 controls and DEL. No HTTP header may carry them either.
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Link targets or texts that mark an unsubscribe or preferences link: rewriting those would put
# a redirect in front of the reader's way out, and some mailbox providers check them directly.
_UNSUBSCRIBE_MARKERS = (
    "unsubscribe",
    "unsub",
    "opt-out",
    "optout",
    "opt out",
    "preferences",
    "preference-center",
    "email-settings",
    "manage subscription",
    "manage-subscription",
    "abmelden",
    "désinscri",
    "desinscri",
    "darse de baja",
)
_NAMED_REFERENCE = re.compile(r"[A-Za-z][A-Za-z0-9]*;?")

# A 1x1 transparent GIF (GIF89a, one-colour palette, graphic control extension with the
# transparency flag set).
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


# Tokens ----------------------------------------------------------------------------------


def click_token(send_public_id: str, position: int, url: str) -> str:
    """A self-contained click token: the send, the link's position and the exact URL, signed.

    Nothing is stored per link; the signature is what makes the redirect safe: only URLs that
    this service put in a mail can ever come back out of a token.
    """
    return signing.Signer(salt=CLICK_SALT).sign_object(
        [send_public_id, position, url], compress=True
    )


def read_click_token(token: str) -> tuple[str, int, str] | None:
    """(send public id, position, url) of a valid click token, or None."""
    try:
        value = signing.Signer(salt=CLICK_SALT).unsign_object(token)
    except signing.BadSignature:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or not isinstance(value[1], int)
        or not isinstance(value[2], str)
        or not is_trackable_scheme(value[2])
    ):
        return None
    # Links are signed with their control characters percent-encoded (`link_target`); a token
    # signed before may hold raw ones, which neither a Location header nor a jsonb column can
    # carry (PostgreSQL refuses NUL).
    return value[0], value[1], _escape_controls(value[2])


def open_token(send_public_id: str) -> str:
    return signing.Signer(salt=OPEN_SALT).sign(send_public_id)


def read_open_token(token: str) -> str | None:
    try:
        return signing.Signer(salt=OPEN_SALT).unsign(token)
    except signing.BadSignature:
        return None


def click_url(send_public_id: str, position: int, url: str) -> str:
    token = click_token(send_public_id, position, url)
    return settings.SITE_URL + reverse("tracking-click", args=[token])


def open_url(send_public_id: str) -> str:
    return settings.SITE_URL + reverse("tracking-open", args=[open_token(send_public_id)])


def redirect_location(url: str) -> str:
    """The Location header for a tracked URL: the URL as a browser would request it.

    ASCII URLs come back exactly as written (`read_click_token` has percent-encoded control
    characters, which no header may carry). Non-ASCII characters are encoded the way a browser
    encodes them before following a link: the host with IDNA, everything else as UTF-8 percent
    escapes (existing escapes are left alone).
    """
    if url.isascii():
        return url
    scheme, rest = url.split("://", 1)
    authority_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            authority_end = min(authority_end, index)
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hostport = authority.rpartition("@")
    host, colon, port = hostport.partition(":")
    if not host.isascii():
        try:
            host = to_ascii(host)
        except UnicodeError:
            # Left for iri_to_uri to percent-encode: a browser percent-decodes a host before
            # its own (more lenient) UTS #46 processing, so the reader lands where the link
            # would have taken them.
            pass
    return iri_to_uri(f"{scheme}://{userinfo}{at}{host}{colon}{port}{tail}")


# Deciding what is tracked ------------------------------------------------------------------


def is_trackable_scheme(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def link_target(raw_value: str) -> str:
    """The URL a browser follows for an href attribute's raw source text."""
    return _escape_controls(decode_attribute(raw_value).strip(_URL_STRIP).translate(_URL_DELETE))


def _escape_controls(url: str) -> str:
    return _URL_CONTROL.sub(lambda match: f"%{ord(match.group()):02X}", url)


def is_unsubscribe_link(url: str, text: str) -> bool:
    haystack = f"{url}\n{text}".lower()
    return any(marker in haystack for marker in _UNSUBSCRIBE_MARKERS)


def decode_attribute(raw: str) -> str:
    """Decodes character references in an attribute value the way the HTML tokenizer does.

    Unlike html.unescape, a named reference without its semicolon followed by "=" or an
    alphanumeric is kept as written: `?a=1&region=eu` stays `&region`, not `®ion`.
    """
    if "&" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while True:
        amp = raw.find("&", i)
        if amp == -1:
            out.append(raw[i:])
            return "".join(out)
        out.append(raw[i:amp])
        i = amp + 1
        if raw.startswith("#", i):
            j = i + 1
            hexadecimal = raw[j : j + 1] in ("x", "X")
            if hexadecimal:
                j += 1
            digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
            k = j
            while k < len(raw) and raw[k] in digits:
                k += 1
            if k == j:
                out.append("&")
                continue
            end = k + 1 if raw.startswith(";", k) else k
            decoded = html_lib.unescape(f"&#{'x' if hexadecimal else ''}{raw[j:k]};")
            # html.unescape drops controls such as &#x1f; that the tokenizer keeps.
            out.append(decoded or chr(int(raw[j:k], 16 if hexadecimal else 10)))
            i = end
            continue
        match = _NAMED_REFERENCE.match(raw, i)
        if match is None:
            out.append("&")
            continue
        name = match.group()
        # The longest known reference that prefixes the name, as the tokenizer matches it.
        for length in range(min(len(name), 33), 0, -1):
            candidate = name[:length]
            if candidate in HTML5_ENTITIES:
                break
        else:
            out.append("&")
            continue
        after = raw[i + length : i + length + 1]
        if not candidate.endswith(";") and (after == "=" or after.isalnum()):
            out.append("&")
            continue
        out.append(HTML5_ENTITIES[candidate])
        i += length


# The scanner -------------------------------------------------------------------------------


@dataclass
class Attribute:
    name: str  # lower-cased
    start: int  # offset of the whitespace before the name (for removal)
    end: int  # offset just past the value (or the name when there is no value)
    value_start: int = -1  # offsets of the value without its quotes; -1 when there is none
    value_end: int = -1


@dataclass
class Tag:
    name: str  # lower-cased
    start: int
    end: int
    closing: bool = False
    attributes: list[Attribute] = field(default_factory=list)

    def attribute(self, name: str) -> Attribute | None:
        # Browsers keep the first of duplicate attributes.
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None


def scan_tags(text: str) -> list[Tag]:
    """Start and end tags of an HTML document with their offsets, per the HTML tokenizer.

    Comments (conditional comments included), the doctype, processing instructions and the
    content of raw-text elements are skipped. An unterminated tag at the end is dropped, as a
    browser drops it.
    """
    tags: list[Tag] = []
    length = len(text)
    lower: str | None = None
    i = 0
    while True:
        lt = text.find("<", i)
        if lt == -1 or lt + 1 >= length:
            return tags
        nxt = text[lt + 1]
        if text.startswith("<!--", lt):
            if text.startswith("<!-->", lt) or text.startswith("<!--->", lt):
                i = text.index(">", lt) + 1
                continue
            end = _comment_end(text, lt + 4)
            if end == -1:
                return tags
            i = end
            continue
        if nxt in "!?":
            end = text.find(">", lt + 2)
            if end == -1:
                return tags
            i = end + 1
            continue
        closing = nxt == "/"
        name_start = lt + 2 if closing else lt + 1
        if name_start >= length or not text[name_start].isascii() or not text[name_start].isalpha():
            if closing and text.startswith(">", name_start):
                i = name_start + 1  # "</>" is dropped
            elif closing:
                end = text.find(">", name_start)  # "</ junk>" is a bogus comment
                if end == -1:
                    return tags
                i = end + 1
            else:
                i = lt + 1  # a lone "<" is text
            continue
        tag = _scan_tag(text, lt, name_start, closing)
        if tag is None:
            return tags
        tags.append(tag)
        i = tag.end
        if not closing and tag.name in _RAW_TEXT:
            if lower is None:
                lower = text.lower()  # once per document: keeps many raw-text elements linear
            i = _raw_text_end(text, lower, tag.end, tag.name)
            if i == -1:
                return tags


def _comment_end(text: str, i: int) -> int:
    """Offset after a comment whose content starts at i, or -1 when it never ends."""
    # The second search stops where the first matched, so that many comments stay linear.
    end = text.find("-->", i)
    bang = text.find("--!>", i, len(text) if end == -1 else end)
    if bang != -1:
        return bang + 4
    return -1 if end == -1 else end + 3


def _raw_text_end(text: str, lower: str, i: int, name: str) -> int:
    """Offset of the end tag closing a raw-text element opened before i."""
    needle = "</" + name
    while True:
        index = lower.find(needle, i)
        if index == -1:
            return -1
        after = lower[index + len(needle) : index + len(needle) + 1]
        if after == "" or after in _SPACE or after in "/>":
            return index
        i = index + len(needle)


def _scan_tag(text: str, lt: int, name_start: int, closing: bool) -> Tag | None:
    length = len(text)
    i = name_start
    while i < length and text[i] not in _SPACE and text[i] not in "/>":
        i += 1
    tag = Tag(name=text[name_start:i].lower(), start=lt, end=-1, closing=closing)
    seen: set[str] = set()
    while True:
        attr_start = i
        while i < length and (text[i] in _SPACE or text[i] == "/"):
            i += 1
        if i >= length:
            return None
        if text[i] == ">":
            tag.end = i + 1
            return tag
        name_begin = i
        i += 1  # the first character of a name may be "="
        while i < length and text[i] not in _SPACE and text[i] not in "/>=":
            i += 1
        attribute = Attribute(name=text[name_begin:i].lower(), start=attr_start, end=i)
        j = i
        while j < length and text[j] in _SPACE:
            j += 1
        if j < length and text[j] == "=":
            j += 1
            while j < length and text[j] in _SPACE:
                j += 1
            if j >= length:
                return None
            quote = text[j]
            if quote in "\"'":
                close = text.find(quote, j + 1)
                if close == -1:
                    return None
                attribute.value_start, attribute.value_end = j + 1, close
                i = close + 1
            else:
                k = j
                while k < length and text[k] not in _SPACE and text[k] != ">":
                    k += 1
                attribute.value_start, attribute.value_end = j, k
                i = k
            attribute.end = i
        if attribute.name not in seen:
            seen.add(attribute.name)
            tag.attributes.append(attribute)


# Injection ---------------------------------------------------------------------------------


@dataclass
class _Link:
    tag: Tag
    href: Attribute
    opt_out: Attribute | None


def _lxml_links(text: str) -> list[tuple[int, str]] | None:
    """(source line, text) of every <a href> as lxml reads the document, or None."""
    try:
        parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=False)
        root = lxml_html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):
        return None
    return [
        (element.sourceline, element.text_content())
        for element in root.iter("a")
        if element.get("href") is not None
    ]


def _same_links(html: str, links: list[_Link], structure: list[tuple[int, str]]) -> bool:
    """Whether both readings found the same links: same number, each on the lines of its tag.

    libxml2 reports the line where it finished reading a start tag, which for a tag spread
    over several lines is not the line where it began.
    """
    if len(links) != len(structure):
        return False
    line, offset = 1, 0
    for link, (lxml_line, _) in zip(links, structure, strict=True):
        line += html.count("\n", offset, link.tag.start)
        end_line = line + html.count("\n", link.tag.start, link.tag.end)
        offset = link.tag.start
        if not line <= lxml_line <= end_line:
            return False
    return True


def inject(html: str, *, send, policy) -> str:
    """The HTML with the open pixel and tracked links, as far as the policy allows them."""
    track_opens = getattr(policy, "track_opens", True)
    track_clicks = getattr(policy, "track_clicks", True)
    if not html or not (track_opens or track_clicks or OPT_OUT_ATTRIBUTE in html.lower()):
        return html

    tags = scan_tags(html)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), non-overlapping

    links = [
        _Link(tag, tag.attribute("href"), tag.attribute(OPT_OUT_ATTRIBUTE))
        for tag in tags
        if tag.name == "a" and not tag.closing and tag.attribute("href") is not None
    ]
    for tag in tags:
        opt_out = tag.attribute(OPT_OUT_ATTRIBUTE) if tag.name == "a" else None
        if opt_out is not None and not tag.closing:
            # The marker is an instruction to Fluxomail, not part of the mail.
            edits.append((opt_out.start, opt_out.end, ""))

    if track_clicks and links:
        structure = _lxml_links(html)
        if structure is None or not _same_links(html, links, structure):
            logger.warning("tracking: links could not be mapped; click tracking skipped")
        else:
            for position, (link, (_, text)) in enumerate(zip(links, structure, strict=True)):
                if link.opt_out is not None or link.href.value_start == -1:
                    continue
                raw = html[link.href.value_start : link.href.value_end]
                url = link_target(raw)
                if not is_trackable_scheme(url) or is_unsubscribe_link(url, text):
                    continue
                edits.append(
                    (
                        link.href.value_start,
                        link.href.value_end,
                        click_url(send.public_id, position, url),
                    )
                )

    if track_opens:
        edits.append((*_pixel_offset(html, tags), pixel_html(send.public_id)))

    if not edits:
        return html
    edits.sort(key=lambda edit: edit[0])
    out: list[str] = []
    cursor = 0
    for start, end, replacement in edits:
        out.append(html[cursor:start])
        out.append(replacement)
        cursor = end
    out.append(html[cursor:])
    return "".join(out)


def pixel_html(send_public_id: str) -> str:
    # Sized 1x1 by attribute and style, without border or margin, so no client gives it room.
    return (
        f'<img src="{open_url(send_public_id)}" width="1" height="1" alt="" border="0" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;'
        'overflow:hidden;" />'
    )


def _pixel_offset(html: str, tags: list[Tag]) -> tuple[int, int]:
    """Where the pixel goes: before the last </body>, else before </html>, else at the end."""
    for name in ("body", "html"):
        for tag in reversed(tags):
            if tag.closing and tag.name == name:
                return tag.start, tag.start
    return len(html), len(html)
