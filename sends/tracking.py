"""Open and click tracking: the pixel, the rewritten links, and their signed tokens.

The HTML a customer sends must reach the reader unchanged apart from the links and the pixel:
entities, comments, Outlook's conditional comments, the doctype, attribute quoting and
whitespace all stay byte for byte. Serialising an lxml tree would normalise all of those, so
the document is read twice and written never:

* lxml (libxml2, the parser premailer already uses) gives the document's structure: which
  elements are links, their text (to spot unsubscribe links), and where they sit;
* a small scanner that follows the HTML tokenizer's rules for tags, quoted attributes, comments
  and raw-text elements gives the exact character offsets of each `<a>` start tag and its
  attributes, so that only the `href` value and the opt-out attribute are spliced. Its rules
  are patterns with possessive quantifiers (one match per tag, nothing backtracks): linear in
  the document, with Python's own work per tag, not per character or attribute.

What both cost is bounded before a send is accepted (sends.html_limits): tags, attributes and
links; libxml2 compares every attribute of a tag with every other.

The two readings must agree on the links (same number, same source lines) before any link is
changed; when they do not (badly broken markup), links are left as written, which loses click
tracking for that mail but never breaks a link.
"""

import bisect
import functools
import html as html_lib
import logging
import re
from dataclasses import dataclass
from html.entities import html5 as HTML5_ENTITIES

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, get_urlconf, reverse
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
_UNSUBSCRIBE = re.compile("|".join(map(re.escape, _UNSUBSCRIBE_MARKERS)))
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


def _around_token(name: str) -> tuple[str, str]:
    """settings.SITE_URL + reverse(name, args=[token]) split around the token: (before,
    after). Signed tokens need no quoting in a path, so the URL is the token between the two.
    Reversing resolves the URLconf on every call; the parts depend only on what the key
    names, so they are reversed once per process for each."""
    urlconf = get_urlconf() or settings.ROOT_URLCONF  # as reverse() picks it
    return _reversed_around(name, settings.SITE_URL, get_script_prefix(), urlconf)


@functools.lru_cache(maxsize=64)
def _reversed_around(name: str, site_url: str, script_prefix: str, urlconf) -> tuple[str, str]:
    placeholder = "token"
    before, _, after = reverse(name, urlconf=urlconf, args=[placeholder]).rpartition(placeholder)
    return site_url + before, after


def click_url(send_public_id: str, position: int, url: str) -> str:
    before, after = _around_token("tracking-click")
    return before + click_token(send_public_id, position, url) + after


def click_urls(send_public_id: str):
    """click_url for the links of one send, with one signer for them all (a mail may hold up
    to sends.html_limits.MAX_LINKS links)."""
    signer = signing.Signer(salt=CLICK_SALT)
    before, after = _around_token("tracking-click")

    def click_url(position: int, target: str) -> str:
        token = signer.sign_object([send_public_id, position, target], compress=True)
        return before + token + after

    return click_url


def open_url(send_public_id: str) -> str:
    before, after = _around_token("tracking-open")
    return before + open_token(send_public_id) + after


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
    return _UNSUBSCRIBE.search(f"{url}\n{text}".lower()) is not None


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


@dataclass(slots=True)
class Attribute:
    name: str  # lower-cased
    start: int  # offset of the whitespace before the name (for removal)
    end: int  # offset just past the value (or the name when there is no value)
    value_start: int = -1  # offsets of the value without its quotes; -1 when there is none
    value_end: int = -1


@dataclass(slots=True)
class Tag:
    name: str  # lower-cased
    start: int
    end: int
    closing: bool = False
    # Where the attributes are written: from the end of the name to the tag's closing "/>".
    attributes_start: int = -1
    attributes_end: int = -1


# The HTML tokenizer's reading of a tag, as patterns. Possessive quantifiers only: each part
# matches the one way the tokenizer reads it and never gives back what it took, so a match
# costs one pass over the tag whatever the input. A name runs to a space, "/" or ">" (its first
# character may be "="), a quoted value to its closing quote (when there is none, the tag runs
# to the end of the document and is dropped), an unquoted value to a space or ">".
_S = r"[\t\n\f\r ]"
_NAME_END = r"(?:[\t\n\f\r /=>]|\Z)"


def _attribute_pattern(before_name: str = "", groups: bool = False) -> str:
    """An attribute with the spaces or "/" before it; with `groups`, its name and value (in
    double quotes, single quotes or bare) are named groups."""

    def group(name: str) -> str:
        return f"(?P<{name}>" if groups else "(?:"

    return (
        rf"[\t\n\f\r /]*+{before_name}{group('name')}[^\t\n\f\r />][^\t\n\f\r /=>]*+)"
        rf"""(?:{_S}*+={_S}*+(?:"{group("double")}[^"]*+)(?:"|\Z)|'{group("single")}[^']*+)"""
        rf"(?:'|\Z)|{group('bare')}[^\t\n\f\r >]*+)))?"
    )


_ATTRIBUTE = re.compile(_attribute_pattern())
_ATTRIBUTES = rf"(?:{_attribute_pattern()})*+"
_RAW_NAMES = "|".join(sorted(_RAW_TEXT))
# One token of the HTML tokenizer at a "<", with what it skips:
# - a raw-text element's start tag and its text, up to the end tag that closes it (ASCII
#   case-insensitive, followed by a space, "/", ">" or the end) or the end of the document;
# - any other start or end tag;
# - a comment ("<!-->" and "<!--->" end at once), a doctype, processing instruction or bogus
#   comment (also "</" without a letter), up to its ">";
# - anything else that opens markup but never ends: the tag or comment and the rest of the
#   document are dropped, as a browser drops them.
# A "<" followed by anything else is text. Possessive or lazy-to-a-literal throughout: a
# document costs one pass, whatever it holds.
_TOKEN = re.compile(
    rf"<(?:(?P<raw>{_RAW_NAMES})(?=[\t\n\f\r />])(?P<raw_attributes>{_ATTRIBUTES})"
    r"[\t\n\f\r /]*+>(?P<raw_text>(?s:.*?))(?=</(?P=raw)(?:[\t\n\f\r />]|\Z)|\Z)"
    rf"|(?P<closing>/?)(?P<name>[A-Za-z][^\t\n\f\r />]*+)(?P<attributes>{_ATTRIBUTES})"
    r"[\t\n\f\r /]*+>"
    r"|!--(?:>|->|(?s:.*?)--!?>)"
    r"|(?:!(?!--)|\?|/(?![A-Za-z]))[^>]*+>"
    r"|[A-Za-z/!?](?s:.*))",
    re.IGNORECASE | re.ASCII,
)


_TAG_NAME_END = r"(?=[\t\n\f\r />]|\Z)"


@functools.lru_cache(maxsize=4)
def _wanted_token(names: frozenset[str]) -> re.Pattern:
    """_TOKEN for a scan that wants only the tags `names` (none of them raw text): every other
    token, and the text between, is skipped inside the pattern, so that Python sees only the
    wanted tags. A match is the skipped run and then a wanted tag (its groups as _TOKEN's), or
    the skipped run up to the end of the document (no `name`): the pattern always matches where
    it starts, so a document costs one pass.

    The run takes, token by token and in _TOKEN's order: text up to a "<"; a raw-text element;
    a start or end tag of another name; a comment, doctype or processing instruction; "<" that
    opens nothing (text). Markup that never ends drops the rest of the document, as in _TOKEN,
    unless it is a wanted tag that does end.
    """
    wanted = "|".join(sorted(map(re.escape, names)))
    wanted_tag = (
        rf"(?P<closing>/?)(?P<name>(?:{wanted}){_TAG_NAME_END})(?P<attributes>{_ATTRIBUTES})"
        r"[\t\n\f\r /]*+>"
    )
    wanted_ahead = rf"/?(?:{wanted}){_TAG_NAME_END}[^\t\n\f\r />]*+{_ATTRIBUTES}[\t\n\f\r /]*+>"
    # One alternative per raw-text element, each to its own end tag (no backreference: a
    # capture inside a possessive repeat trips CPython 3.11's re).
    raw_elements = "|".join(
        rf"{raw}(?=[\t\n\f\r />]){_ATTRIBUTES}[\t\n\f\r /]*+>"
        rf"(?s:.*?)(?=</{raw}(?:[\t\n\f\r />]|\Z)|\Z)"
        for raw in sorted(_RAW_TEXT)
    )
    skipped = (
        r"(?:[^<]++"
        rf"|<(?:{raw_elements}"
        rf"|/?(?!(?:{wanted}){_TAG_NAME_END})[A-Za-z][^\t\n\f\r />]*+{_ATTRIBUTES}"
        r"[\t\n\f\r /]*+>"
        r"|!--(?:>|->|(?s:.*?)--!?>)"
        r"|(?:!(?!--)|\?|/(?![A-Za-z]))[^>]*+>"
        rf"|(?!{wanted_ahead})[A-Za-z/!?](?s:.*)"
        r"|(?![A-Za-z/!?])))*+"
    )
    return re.compile(rf"{skipped}(?:<{wanted_tag}|\Z)", re.IGNORECASE | re.ASCII)


def scan_tags(text: str, names: frozenset[str] | None = None) -> list[Tag]:
    """Start and end tags of an HTML document with their offsets, per the HTML tokenizer; with
    `names`, only the tags of those names.

    Comments (conditional comments included), the doctype, processing instructions and the
    content of raw-text elements are skipped. An unterminated tag at the end is dropped, as a
    browser drops it. Attributes are only located: `attribute` reads one.

    Linear in the document: one pass of one pattern, and Python sees each token once (with
    `names` that are not raw-text elements, only the wanted tags).
    """
    if names is not None and not names & _RAW_TEXT:
        return [
            Tag(
                token.group("name").lower(),
                token.start("closing") - 1,
                token.end(),
                bool(token.group("closing")),
                *token.span("attributes"),
            )
            for token in _wanted_token(names).finditer(text)
            if token.group("name") is not None
        ]
    tags: list[Tag] = []
    for token in _TOKEN.finditer(text):
        raw = token.group("raw")
        if raw is not None:
            name = raw.lower()
            if names is None or name in names:
                end = token.start("raw_text")
                tags.append(Tag(name, token.start(), end, False, *token.span("raw_attributes")))
            continue
        name = token.group("name")
        if name is None:
            continue  # comment, doctype, or what is dropped
        name = name.lower()
        if names is None or name in names:
            closing = bool(token.group("closing"))
            tags.append(Tag(name, token.start(), token.end(), closing, *token.span("attributes")))
    return tags


def attribute_texts(text: str) -> list[str]:
    """The attributes of every tag scan_tags finds, as written (one C pass)."""
    return [raw or other for _, raw, _, _, _, other in _TOKEN.findall(text)]


@functools.lru_cache(maxsize=4)
def _attribute_named(name: str) -> re.Pattern:
    """The attributes before the first one named `name`, then it: names compare ASCII
    case-insensitively, as the HTML standard lower-cases them (a dotless ı is no i)."""
    other = rf"(?!{re.escape(name)}{_NAME_END})"
    return re.compile(
        rf"(?:{_attribute_pattern(other)})*+(?P<attribute>{_attribute_pattern(groups=True)})",
        re.IGNORECASE | re.ASCII,
    )


def attribute(text: str, tag: Tag, name: str) -> Attribute | None:
    """The first attribute called `name` (lower-case) of a tag found by scan_tags, as a browser
    keeps the first of duplicates; one pass in C whatever the number of attributes."""
    match = _attribute_named(name).match(text, tag.attributes_start, tag.attributes_end)
    if match is None:
        return None
    found = Attribute(name, *match.span("attribute"))
    for group in ("double", "single", "bare"):
        if match.start(group) != -1:
            found.value_start, found.value_end = match.span(group)
    return found


def count_attributes(attributes: str) -> int:
    """How many attributes a tag's attribute text holds (attribute_texts), duplicates included."""
    return len(_ATTRIBUTE.findall(attributes)) if attributes else 0


# Injection ---------------------------------------------------------------------------------


@dataclass
class _Link:
    tag: Tag
    href: Attribute
    opt_out: Attribute | None


def _lxml_links(text: str) -> list[tuple[int, bool]] | None:
    """(source line, whether its text marks an unsubscribe link) of every <a href> as lxml reads
    the document, or None.

    A link's text is its element's text content (comments excluded, the text of the links
    nested in it included). libxml2 writes the text of a subtree in C: the document's once, and
    when a marker occurs in it, each link's. Walking the tree in Python to collect the same
    pieces cost twice the parse; the walk (`_walked_links`) stays for links nested in links,
    where each link's own text would cost nesting × text.
    """
    try:
        parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=False)
        root = lxml_html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):
        return None
    links = [element for element in root.iter("a") if element.get("href") is not None]
    if not links:
        return []
    if not _marked(_text_of(root)):
        return [(link.sourceline, False) for link in links]
    # Links whose subtrees are disjoint hold at most the document's text between them.
    if any(next(link.iterdescendants("a"), None) is not None for link in links):
        return _walked_links(root)
    return [(link.sourceline, _marked(_text_of(link))) for link in links]


def _text_of(element) -> str:
    """An element's text content, as libxml2 writes it: its text nodes and those of its
    descendants in document order, comments and processing instructions left out (their tails
    are text), its own tail left out."""
    return etree.tostring(element, method="text", encoding=str, with_tail=False)


def _marked(text: str) -> bool:
    """Whether an unsubscribe marker occurs in `text`, compared lower-cased."""
    return _UNSUBSCRIBE.search(text.lower()) is not None


def _walked_links(root) -> list[tuple[int, bool]]:
    """_lxml_links' answer from a walk over the tree in Python, for documents with links nested
    in links.

    Each element's text content is a contiguous part of the document's text, so the text is
    lower-cased once, the markers found in it once, and each link asks whether one lies within
    its part (100 nested links around 900 KB of text: seconds read link by link).
    """
    pieces: list[str] = []  # the document's text nodes, lower-cased, in order
    size = 0
    links: list[list[int]] = []  # [source line, start, end] in the joined pieces
    # Depth first with a stack of child iterators: lxml's iterwalk leaves out comments, whose
    # tails are text of the element around them.
    stack: list[tuple[etree._Element, list[int] | None, object]] = []
    element = root
    while True:
        if element is not None:  # entering it
            link = None
            if element.tag == "a" and element.get("href") is not None:
                link = [element.sourceline, size, size]
                links.append(link)
            if isinstance(element.tag, str) and element.text:  # not a comment's text
                pieces.append(element.text.lower())
                size += len(pieces[-1])
            stack.append((element, link, iter(element)))
        current, link, children = stack[-1]
        element = next(children, None)
        if element is not None:
            continue
        stack.pop()  # leaving it
        if link is not None:
            link[2] = size
        if not stack:
            break
        if current.tail:
            pieces.append(current.tail.lower())
            size += len(pieces[-1])
    markers = _marker_ends("".join(pieces))
    return [(line, _marked_between(markers, start, end)) for line, start, end in links]


def _marker_ends(text: str) -> tuple[list[int], list[int]]:
    """(starts, ends) of every unsubscribe marker in `text`, by start; ends[i] is the least end
    of the markers from starts[i] on."""
    found: list[tuple[int, int]] = []
    for marker in _UNSUBSCRIBE_MARKERS:
        index = text.find(marker)
        while index != -1:
            found.append((index, index + len(marker)))
            index = text.find(marker, index + 1)
    found.sort()
    starts = [start for start, _ in found]
    ends = [end for _, end in found]
    for i in range(len(ends) - 2, -1, -1):
        ends[i] = min(ends[i], ends[i + 1])
    return starts, ends


def _marked_between(markers: tuple[list[int], list[int]], start: int, end: int) -> bool:
    """Whether a marker lies within text[start:end]."""
    starts, ends = markers
    i = bisect.bisect_left(starts, start)
    return i < len(starts) and ends[i] <= end


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


_INJECTION_TAGS = frozenset({"a", "body", "html"})  # links, and where the pixel goes


def inject(html: str, *, send, policy) -> str:
    """The HTML with the open pixel and tracked links, as far as the policy allows them."""
    track_opens = getattr(policy, "track_opens", True)
    track_clicks = getattr(policy, "track_clicks", True)
    if not html or not (track_opens or track_clicks or OPT_OUT_ATTRIBUTE in html.lower()):
        return html

    tags = scan_tags(html, _INJECTION_TAGS)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), non-overlapping

    links: list[_Link] = []
    for tag in tags:
        if tag.name != "a" or tag.closing:
            continue
        opt_out = attribute(html, tag, OPT_OUT_ATTRIBUTE)
        if opt_out is not None:
            # The marker is an instruction to Fluxomail, not part of the mail.
            edits.append((opt_out.start, opt_out.end, ""))
        href = attribute(html, tag, "href")
        if href is not None:
            links.append(_Link(tag, href, opt_out))

    if track_clicks and links:
        structure = _lxml_links(html)
        if structure is None or not _same_links(html, links, structure):
            logger.warning("tracking: links could not be mapped; click tracking skipped")
        else:
            click_url_of = click_urls(send.public_id)
            for position, (link, (_, marked)) in enumerate(zip(links, structure, strict=True)):
                if link.opt_out is not None or link.href.value_start == -1:
                    continue
                raw = html[link.href.value_start : link.href.value_end]
                url = link_target(raw)
                if not is_trackable_scheme(url) or marked or is_unsubscribe_link(url, ""):
                    continue
                edits.append(
                    (
                        link.href.value_start,
                        link.href.value_end,
                        click_url_of(position, url),
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
