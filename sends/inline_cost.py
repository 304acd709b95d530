"""An upper bound on the work of CSS inlining, from linear scans, before any of it runs.

premailer inlines with lxml (libxml2), cssutils and cssselect. Measured on hostile documents
(README, "CSS inlining"), their cost has terms that a few kilobytes drive into minutes:

* cssutils compares every declaration of a block with every other (declarations² per block),
  and for each selector walks the rules of its stylesheet (selectors × rules);
* every selector is an XPath query over every element, and the declarations of every match are
  parsed again and merged into the element's style (matches × declarations);
* premailer strips "!important" with a regular expression that backtracks over whitespace runs
  (length² per run); libxml2 compares every attribute of a tag with every other (attributes²);
* some input has no bound at all: cssutils' tokenizer backtracks exponentially on a backslash
  in an unterminated string or url(...), and libxml2 silently drops everything nested deeper
  than 255 elements.

So the document is read once the way libxml2 2.14 reads it (the HTML standard's tokenizer;
possessive patterns and str.find only, so nothing backtracks), the CSS the way cssutils splits it
into blocks and declarations, and every term is counted with its measured cost in microseconds.
What the reading cannot bound (a backslash in CSS, a url( that cssutils may not close, nesting
that libxml2 cuts) is refused, and the reading stops as soon as the running total passes the
budget, so it costs no more than the budget itself.
"""

import functools
import html as html_lib
import math
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

# Costs in microseconds of premailer on the development machine, each the largest seen on the
# shapes that drive its term (README, "CSS inlining").
PER_DOCUMENT = 1000  # premailer's fixed cost: parsers, <head>, serialisation
PER_BYTE = 0.1  # libxml2 parse and serialisation, and this module's own reading
PER_ELEMENT = 5  # libxml2, premailer's loops, and this module's reading of the tag
PER_ATTRIBUTE_PAIR = 0.002  # libxml2's duplicate check compares every attribute of a tag
PER_STYLE_ELEMENT = 50
PER_CSS_BYTE = 2  # cssutils' tokenizer
PER_COMMENT = 10
PER_RULE = 100
PER_STATEMENT = 800  # @import, @charset or junk up to a ";"
PER_DECLARATION = 60  # cssutils parses a declaration in the sheet, again when it matches
PER_DECLARATION_PAIR = 1.5  # cssutils compares every declaration of a block with every other
PER_TOKEN = 35  # cssutils' value parser, per token of a declaration and per bracket around it
PER_TOKEN_PAIR = 0.05  # ... which recurses once per token
LEFTOVER = 3  # in @media, premailer parses every declaration again and serialises it
PER_SELECTOR = 100  # cssutils' parse, cssselect's translation, the XPath compilation
PER_SELECTOR_TOKEN = 20
PER_SELECTOR_RULE = 0.2  # for each selector cssutils walks the rules of its sheet
PER_COMMENT_NODE = 2
PER_VISIT = 0.1  # an XPath step walks a node (element, text or comment)
PER_PREDICATE = 0.1  # a class, id, attribute or sibling test on an element
PER_ATTRIBUTE_CHAR = 0.003  # libxml2's contains(): attribute bytes times the test's length
PER_MERGE = 0.001  # libxml2 merges the node sets of a step pairwise: results² per context
PER_SIBLING = 0.02  # :first-child / :last-child count the siblings of every candidate
PER_MATCH = 8  # an element's style list, merge and basic attributes
PER_MATCH_DECLARATION = 1.5
PER_WHITESPACE_PAIR = 0.003  # premailer's "\s*!important" over a whitespace run
# Per byte that inlining adds to the document: premailer serialises it, and the send path reads
# the larger document again (tracking, the MIME part, storage, the SMTP hand-off).
PER_ADDED_BYTE = 1.0
# What a rule adds to an element at most: ' style=""', and "; " between its declarations as
# cssutils serialises them.
ADDED_PER_MATCH = len(' style=""')
ADDED_PER_DECLARATION = 2

# libxml2 drops the rest of a document once it nests deeper than 255 elements; html and body
# may be implied above what the document says.
MAX_DEPTH = 250
# Nested CSS blocks (@supports, @media, a rule): deeper is not CSS cssutils parses.
MAX_CSS_NESTING = 4
# Nested brackets in CSS, as calc(var(...)) or :not(:nth-child(...)): cssutils' value parser
# takes about twice as long for every level (15 levels: half a second; 20: over a minute).
MAX_CSS_BRACKETS = 4


class TooCostly(Exception):
    """Inlining may cost more than the budget, or its cost cannot be bounded."""


class _Meter:
    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0.0

    def add(self, units: float) -> None:
        self.total += units
        self.check()

    def check(self, pending: float = 0) -> None:
        if self.total + pending > self.limit:
            raise TooCostly(f"estimated work over {self.limit}")


# HTML -----------------------------------------------------------------------------------------

_SPACE = "\t\n\f\r "
# A start or end tag up to its ">", per the HTML tokenizer: names run to a space, "/" or ">",
# quoted values may hold ">"; a tag left open at the end matches nothing.
_NAME = r"[^\t\n\f\r />][^\t\n\f\r /=>]*+"
_EQUALS = r"[\t\n\f\r ]*+=[\t\n\f\r ]*+"
_VALUE = r"""(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+)"""
_TAG = re.compile(
    rf"<(/?)([A-Za-z][^\t\n\f\r />]*+)((?:[\t\n\f\r /]*+{_NAME}(?:{_EQUALS}{_VALUE})?)*+)"
    r"[\t\n\f\r /]*+>"
)
_ATTRIBUTE = re.compile(rf"[\t\n\f\r /]*+({_NAME})(?:{_EQUALS}({_VALUE}))?")
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Raw text: libxml2, as the standard, reads these up to their end tag without markup inside.
_RAW_TEXT = frozenset("script style xmp iframe noembed noframes textarea title".split())
# Start tags that close the open element before them, as libxml2 does (checked against lxml in
# the tests). Only pairs libxml2 certainly closes: closing less only overestimates the depth.
_CLOSED_BY = {
    "p": frozenset(
        "address blockquote caption center col colgroup dd dir div dl dt fieldset form "
        "frameset h1 h2 h3 h4 h5 h6 hr li menu ol p pre table tbody td tfoot th title tr ul "
        "xmp".split()
    ),
    "li": frozenset({"li"}),
    "td": frozenset("tbody td tfoot th tr".split()),
    "th": frozenset("tbody td tfoot th tr".split()),
    "tr": frozenset("tbody tfoot tr".split()),
    "dt": frozenset({"dd", "dl"}),
    "dd": frozenset({"dt"}),
    "option": frozenset({"optgroup", "option"}),
    "thead": frozenset({"tbody", "tfoot"}),
    "tbody": frozenset({"tbody", "tfoot"}),
    "tfoot": frozenset({"tbody"}),
}


@dataclass
class _Styled:
    """An element with a style attribute: premailer parses it when a rule matches the element."""

    name: str
    classes: tuple[str, ...]
    id: str | None
    wild: bool  # an entity in class or id: it may carry any
    style: str


@dataclass
class _Document:
    elements: int = 0
    comments: int = 0  # and doctypes, processing instructions: nodes XPath walks too
    depth: int = 0
    names: Counter = field(default_factory=Counter)
    class_values: list[str] = field(default_factory=list)
    ids: Counter = field(default_factory=Counter)
    wild: int = 0  # elements whose class or id hold a character reference
    attribute_bytes: int = 0
    styled: list[_Styled] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)

    @functools.cached_property
    def classes(self) -> Counter:
        """Elements per class name (lower-cased: more, never fewer); one pass in C."""
        return Counter(" ".join(self.class_values).lower().split())


def _comment_end(html: str, i: int) -> int:
    """Offset after the comment opened at i ("<!--"), or -1 when it never ends."""
    if html.startswith("<!-->", i):
        return i + 5
    if html.startswith("<!--->", i):
        return i + 6
    end = html.find("-->", i + 4)
    bang = html.find("--!>", i + 4, len(html) if end == -1 else end)
    if bang != -1:
        return bang + 4
    return -1 if end == -1 else end + 3


def _closes_tag(lower: str, i: int) -> bool:
    """Whether a tag name that ends at i ends there (space, "/", ">" or the end follow)."""
    after = lower[i : i + 1]
    return after == "" or after in _SPACE or after in "/>"


def _raw_text_end(lower: str, i: int, name: str) -> int:
    """Offset of the end tag that closes a raw-text element whose content starts at i."""
    needle = "</" + name
    while True:
        index = lower.find(needle, i)
        if index == -1 or _closes_tag(lower, index + len(needle)):
            return index
        i = index + len(needle)


_SCRIPT_MARK = re.compile(r"</script|<script|<!--|-->")


def _script_end(lower: str, i: int) -> int:
    """Offset of the "</script" that closes a script, with the standard's escaped states:
    after "<!--", a "<script" keeps the next "</script" from closing it, until "-->"."""
    escaped = double = False
    while mark := _SCRIPT_MARK.search(lower, i):
        token, i = mark.group(), mark.end()
        if token == "<!--":
            escaped = escaped or not double
            i = mark.start() + 2  # "<!-->" escapes and ends at once
        elif token == "-->":
            escaped = double = False
        elif _closes_tag(lower, i):
            if token == "<script":
                double = double or escaped
            elif double:
                double = False
            else:
                return mark.start()
    return -1


def _attribute_value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        return raw[1:-1]
    return raw


# What the tokenizer does at a "<": a whole tag (group 3 holds its attributes), a comment, a
# doctype, processing instruction or bogus comment (also "</" without a letter), or a tag left
# open at the end (what remains is dropped). Any other "<" is text.
_MARKUP = re.compile(
    rf"<(?:(/?)([A-Za-z][^\t\n\f\r />]*+)((?:[\t\n\f\r /]*+{_NAME}(?:{_EQUALS}{_VALUE})?)*+)"
    r"[\t\n\f\r /]*+>|(!--)|([!?]|/(?![A-Za-z]))|(/?[A-Za-z]))"
)


@dataclass(frozen=True)
class _Attributes:
    """What the reading keeps of a start tag's attribute text (the same text, the same result:
    a template's tags repeat a few attribute texts, read once per document)."""

    work: float  # libxml2's duplicate check
    class_value: str | None
    id: str | None
    wild: bool
    style: str | None
    classes: tuple[str, ...]  # of an element with a style attribute


_PLAIN = _Attributes(0, None, None, False, None, ())


def _read_attributes(attrs: str, meter: _Meter, spent: float) -> _Attributes:
    if len(attrs) < 64 and not any(name in attrs.lower() for name in ("class", "id", "style")):
        return _PLAIN  # nothing this module reads, and too short for many attributes
    attributes = _ATTRIBUTE.findall(attrs)
    work = PER_ATTRIBUTE_PAIR * len(attributes) ** 2
    meter.check(spent + work)  # before a Python step per attribute
    values: dict[str, str] = {}
    for attribute_name, raw in attributes:
        # libxml2 keeps the first of duplicate attributes.
        values.setdefault(attribute_name.lower(), raw)
    class_value = element_id = style = None
    classes: tuple[str, ...] = ()
    wild = False
    if "class" in values:
        class_value = _attribute_value(values["class"])
        wild = "&" in class_value
    if "id" in values:
        element_id = _attribute_value(values["id"]).lower()
        wild = wild or "&" in element_id
    if "style" in values:
        style = _attribute_value(values["style"])
        if "&" in style:
            style = html_lib.unescape(style)
        if class_value is not None:
            classes = tuple(class_value.lower().split())
    return _Attributes(work, class_value, element_id, wild, style, classes)


def _read_html(html: str, meter: _Meter) -> _Document:
    """One pass of _MARKUP over the document, with as little Python per tag as it allows: the
    tags' cost is counted in `spent` and checked against what is left of the budget at every
    tag, the names counted in C at the end, and each distinct attribute text read once."""
    document = _Document()
    stack: list[str] = []  # open elements, never fewer than libxml2 keeps open
    lower: str | None = None
    meter.add(PER_BYTE * len(html))
    left = meter.limit - meter.total
    spent = 0.0  # elements, comments and attributes, added to the meter at the end
    names: list[str] = []
    read: dict[str, _Attributes] = {}
    depth = 0
    attribute_bytes = 0
    wild = 0
    class_values = document.class_values
    ids = document.ids
    closed_by = _CLOSED_BY
    i = 0
    while i != -1:
        for markup in _MARKUP.finditer(html, i):
            closing, name, attrs, comment, bogus, unterminated = markup.groups()
            if name is not None:
                name = name.lower()
                if closing:
                    # An end tag closes the current element; libxml2 may close more, never less.
                    if stack and stack[-1] == name:
                        stack.pop()
                    continue
                spent += PER_ELEMENT
                names.append(name)
                while stack and name in closed_by.get(stack[-1], ()):
                    stack.pop()
                if len(stack) >= depth:
                    depth = len(stack) + 1
                    if depth > MAX_DEPTH:
                        raise TooCostly(f"nested deeper than {MAX_DEPTH} elements")
                if name not in _VOID:
                    stack.append(name)
                if attrs:
                    attribute_bytes += len(attrs)
                    tag = read.get(attrs)
                    if tag is None:
                        tag = read[attrs] = _read_attributes(attrs, meter, spent)
                    if tag is not _PLAIN:
                        spent += tag.work
                        if tag.class_value is not None:
                            class_values.append(tag.class_value)
                        if tag.id is not None:
                            ids[tag.id] += 1
                        wild += tag.wild
                        if tag.style is not None:
                            styled = _Styled(name, tag.classes, tag.id, tag.wild, tag.style)
                            document.styled.append(styled)
                if spent > left:
                    meter.check(spent)
                if name in _RAW_TEXT or name == "plaintext":
                    if lower is None:
                        lower = html.lower()  # once: many raw-text elements stay linear
                    i = _raw_text(html, lower, markup.end(), name, document)
                    break
            elif unterminated:
                i = -1
                break
            else:  # a comment, doctype, processing instruction or bogus comment
                spent += PER_COMMENT_NODE
                document.comments += 1
                if comment:
                    i = _comment_end(html, markup.start())
                else:
                    end = html.find(">", markup.end())
                    i = -1 if end == -1 else end + 1
                if spent > left:
                    meter.check(spent)
                break
        else:
            break
    document.elements = len(names)
    document.names = Counter(names)
    document.depth = depth
    document.attribute_bytes = attribute_bytes
    document.wild = wild
    meter.add(spent)
    return document


def _raw_text(html: str, lower: str, i: int, name: str, document: _Document) -> int:
    """Where reading resumes after a raw-text element whose content starts at i (-1: nowhere);
    a <style>'s content is kept."""
    if name == "plaintext":
        return -1
    end = _script_end(lower, i) if name == "script" else _raw_text_end(lower, i, name)
    if end != -1 and _TAG.match(html, end) is None:
        end = -1  # an end tag left open at the end is text
    if name == "style":
        document.stylesheets.append(html[i:] if end == -1 else html[i:end])
    return end


# CSS ------------------------------------------------------------------------------------------

# What changes cssutils' blocks and declarations: comments, strings (an unterminated one ends at
# the newline, as cssutils' INVALID token does), url(...), brackets, braces and ";".
_CSS_STRUCTURE = re.compile(r"""/\*|["']|(?i:url)\(|[{}()\[\];]""")
_CSS_STRING = {quote: re.compile(rf"{quote}[^{quote}\n\r\f]*+{quote}?") for quote in "\"'"}
# cssutils' URI token without escapes (there is no backslash by then): url( w (string | url
# characters) w ). Where it does not match, cssutils' own pattern backtracks over every split.
_URI = re.compile(
    r"""(?i:url)\([\t\n\f\r ]*+(?:"[^"\n\r\f]*+"|'[^'\n\r\f]*+'|([\t!#-&(*-~\x80-\U0010ffff]*+))"""
    r"[\t\n\f\r ]*+\)"
)
_CSS_STRING_OR_URI = re.compile("|".join(p.pattern for p in (_URI, *_CSS_STRING.values())))
_WHITESPACE_RUN = re.compile(r"\s+")
# Tokens as cssutils counts them, near enough: a name, number or dimension, a run of
# whitespace, or one other character (a string counts as its words and quotes: more).
_TOKEN = re.compile(r"[-\w.#%]+|\s+|[^\s\w]")
# The last compound of a selector, as far as it bounds what premailer can match: a tag, classes,
# an id, and premailer's sibling filters.
_COMPOUND = re.compile(r"([a-z][a-z0-9-]*+)?((?:[.#][_a-z0-9-]++)*+)(?::[a-z-]++)?")
_SIBLING_FILTERS = (":first-child", ":last-child", ":nth-child")


def screen_css(css: str) -> None:
    """Refuses CSS that cssutils' tokenizer may not get through in bounded time.

    Every "url(" is checked, wherever it is: cssutils tries its URI pattern at every token that
    starts with one.
    """
    if "\\" in css:
        raise TooCostly("a backslash in CSS")
    lower = css.lower()
    i = lower.find("url(")
    while i != -1:
        uri = _URI.match(css, i)
        if uri is None:
            raise TooCostly("a url( in CSS that cssutils may not close")
        # Read as a function instead (not at the start of a token), its content must not change
        # cssutils' blocks.
        unquoted = uri.group(1) or ""
        if "/*" in unquoted or any(char in unquoted for char in "{}()[]"):
            raise TooCostly("brackets or a comment inside url(...)")
        i = lower.find("url(", uri.end())


@dataclass
class _Block:
    start: int
    prelude: str  # the selector list, or an at-rule's prelude
    matched: bool  # a style rule at the top level: premailer matches its selectors
    semicolons: list[int] = field(default_factory=list)  # where its declarations end
    nested: bool = False  # @media and the like: rules inside, not declarations


@dataclass
class _Rule:
    selectors: str
    declarations: int
    parse: float  # what cssutils' parse of its declarations costs
    important: bool  # premailer splits the rule in two and matches its selectors twice
    length: int  # of its declarations' text


@dataclass
class _Sheet:
    work: float = 0.0  # cssutils' parse
    rules: int = 0  # at the top level: cssutils walks them for every selector
    selectors: int = 0
    matched: list[_Rule] = field(default_factory=list)


def _read_css(css: str, meter: _Meter) -> _Sheet:
    """Blocks, declarations and selectors as cssutils splits them, and what parsing them costs.

    A block ends at the "}" that closes it outside any bracket, a declaration at ";" outside
    brackets: cssutils' own counting. A brace or ";" inside brackets, or a stray "}", would make
    its splitting depend on error recovery: such CSS is refused. Linear in the CSS, and it stops
    once its work would take `meter` over its limit (the work is the caller's to add).
    """
    screen_css(css)
    sheet = _Sheet()
    blocks: list[_Block] = []
    brackets = 0
    prelude_start = i = 0
    while token := _CSS_STRUCTURE.search(css, i):
        char, i = token.group(), token.end()
        if char == "/*":
            end = css.find("*/", i)
            i = len(css) if end == -1 else end + 2
            if not blocks:  # a comment is a rule of the sheet too
                sheet.rules += 1
                sheet.work += PER_COMMENT
        elif char in "\"'":
            i = _CSS_STRING[char].match(css, token.start()).end()
        elif len(char) == 4:  # url(
            uri = _URI.match(css, token.start())
            if uri is None:
                raise TooCostly("a url( in CSS that cssutils may not close")
            i = uri.end()
        elif char in "([":
            brackets += 1
            if brackets > MAX_CSS_BRACKETS:
                raise TooCostly(f"brackets nested deeper than {MAX_CSS_BRACKETS} in CSS")
        elif char in ")]":
            brackets -= 1
            if brackets < 0:
                raise TooCostly("unbalanced brackets in CSS")
        elif brackets:
            raise TooCostly("a brace or semicolon inside brackets in CSS")
        elif char == "{":
            if len(blocks) == MAX_CSS_NESTING:
                raise TooCostly(f"CSS nested deeper than {MAX_CSS_NESTING} blocks")
            prelude = _without_comments(css[prelude_start : token.start()])
            at_rule = prelude.lstrip().startswith("@")
            if blocks:
                if not blocks[-1].prelude.lstrip().startswith("@"):
                    raise TooCostly("a rule nested in a rule in CSS")
                blocks[-1].nested = True
            blocks.append(_Block(i, prelude, matched=not blocks and not at_rule))
            prelude_start = i
        elif char == "}":
            if not blocks:
                raise TooCostly("a stray } in CSS")
            _close(sheet, blocks, css, token.start())
            meter.check(sheet.work)
            prelude_start = i
        elif blocks:  # ;
            blocks[-1].semicolons.append(token.start())
        else:  # @import, @charset, or junk up to the ";"
            _statements(sheet, css[prelude_start:i])
            meter.check(sheet.work)
            prelude_start = i
    while blocks:  # cssutils closes what is still open at the end
        _close(sheet, blocks, css, len(css))
        prelude_start = len(css)
    if _without_comments(css[prelude_start:]).strip():
        _statements(sheet, css[prelude_start:])  # junk left at the end
    return sheet


# Stylesheets read to their end, by their text: the latest few. A service sends a handful of
# templates again and again, and reading a template's CSS is half of the estimate (a 4.5 KB
# stylesheet: 0.9 CPU ms).
_SHEETS_KEPT = 16
_sheets: dict[str, _Sheet] = {}
_sheets_lock = threading.Lock()


@functools.lru_cache(maxsize=_SHEETS_KEPT)
def _whitespace_work(css: str) -> float:
    """premailer's "!important" pattern over every whitespace run of a stylesheet."""
    return PER_WHITESPACE_PAIR * sum(len(run) ** 2 for run in _WHITESPACE_RUN.findall(css))


def _read_css_once(css: str, meter: _Meter) -> _Sheet:
    """_read_css, once for each of the latest _SHEETS_KEPT stylesheet texts.

    A sheet read to its end depends on its text alone: the meter only stops a reading early,
    and every stop is a sheet's work so far passing the budget, which the caller's adding the
    whole sheet's work (never less) refuses the same way. A reading that raises is not kept.
    """
    with _sheets_lock:
        sheet = _sheets.pop(css, None)
        if sheet is not None:
            _sheets[css] = sheet  # now the latest
            return sheet
    sheet = _read_css(css, meter)
    with _sheets_lock:
        _sheets[css] = sheet
        while len(_sheets) > _SHEETS_KEPT:
            del _sheets[next(iter(_sheets))]
    return sheet


def _statements(sheet: _Sheet, text: str) -> None:
    """cssutils tries a rule at every at-keyword of a statement, at least one."""
    count = max(1, text.count("@"))
    sheet.rules += count
    sheet.selectors += count
    sheet.work += PER_STATEMENT * count


def declarations_work(declarations: list[str]) -> float:
    """cssutils' parse of a declaration block: per declaration, per token (more inside nested
    brackets), and every declaration against every other."""
    work = PER_DECLARATION_PAIR * len(declarations) ** 2
    for declaration in declarations:
        # A url(...) or a string is one token (the CSS was screened: every url( matches).
        declaration = _CSS_STRING_OR_URI.sub("u", declaration)
        tokens = len(_TOKEN.findall(declaration))
        brackets = min(MAX_CSS_BRACKETS, declaration.count("(") + declaration.count("["))
        work += PER_DECLARATION + PER_TOKEN * tokens * (1 + brackets) + PER_TOKEN_PAIR * tokens**2
    return work


def _without_comments(text: str) -> str:
    """A prelude as cssutils reads it: without comments, nor the "<!--" and "-->" of old pages."""
    parts = []
    i = 0
    while (start := text.find("/*", i)) != -1:
        parts.append(text[i:start])
        end = text.find("*/", start + 2)
        i = len(text) if end == -1 else end + 2
    parts.append(text[i:])
    return "".join(parts).replace("<!--", " ").replace("-->", " ")


def _close(sheet: _Sheet, blocks: list[_Block], css: str, end: int) -> None:
    block = blocks.pop()
    bounds = [block.start, *(i + 1 for i in block.semicolons), end + 1]
    declarations = [css[start : stop - 1] for start, stop in pairwise(bounds)]
    if block.nested:  # its content was read as rules; a ";" between them is a junk statement
        parse = PER_STATEMENT * len(block.semicolons)
    else:
        parse = declarations_work(declarations) * (LEFTOVER if blocks else 1)
    selectors = block.prelude.count(",") + 1
    sheet.work += (
        PER_RULE
        + parse
        + PER_SELECTOR * selectors
        + PER_SELECTOR_TOKEN * len(_TOKEN.findall(block.prelude))
    )
    sheet.selectors += selectors
    if not blocks:
        sheet.rules += 1
    if block.matched:
        content = css[block.start : end]
        sheet.matched.append(
            _Rule(block.prelude, len(declarations), parse, "!" in content, _serialised(content))
        )


def _serialised(content: str) -> int:
    """The length of a block's declarations as cssutils writes them back, at most: whitespace
    runs become one space (comments are counted as written: more)."""
    return len(content) - sum(len(run) - 1 for run in _WHITESPACE_RUN.findall(content))


@functools.lru_cache(maxsize=64)  # a style is at most SEND_MAX_INLINE_WORK / PER_CSS_BYTE long
def _style_attribute_work(style: str) -> float:
    """cssutils' parse of a style attribute: its declarations, split as in a block."""
    if "{" in style or "}" in style:
        raise TooCostly("a brace in a style attribute")
    return _read_css(f"x{{{style}}}", _Meter(math.inf)).matched[0].parse


# Both together ---------------------------------------------------------------------------------

_COMBINATORS = str.maketrans({">": " > ", "+": " + ", "~": " ~ "})


@dataclass
class _Key:
    """What an element needs for a compound selector to match it, as far as it is known."""

    tag: str | None
    classes: list[str]
    id: str | None

    @classmethod
    def of(cls, compound: str) -> "_Key | None":
        parsed = _COMPOUND.fullmatch(compound.lower())
        if parsed is None:
            return None
        tag, rest = parsed.groups()
        classes = [part.partition("#")[0] for part in rest.split(".")[1:]]
        ids = [part.partition(".")[0] for part in rest.split("#")[1:]]
        return cls(tag, [name for name in classes if name], ids[0] if ids else None)

    def bound(self, document: _Document) -> int:
        """How many elements the compound can match at most."""
        bound = document.elements
        if self.tag:
            bound = min(bound, document.names[self.tag])
        for name in self.classes:
            bound = min(bound, document.classes[name] + document.wild)
        if self.id is not None:
            bound = min(bound, document.ids[self.id] + document.wild)
        return bound

    def admits(self, styled: _Styled) -> bool:
        if self.tag and self.tag != styled.name:
            return False
        return styled.wild or (
            all(name in styled.classes for name in self.classes) and self.id in (None, styled.id)
        )


def _steps(selector: str) -> list[tuple[str, str]]:
    """(combinator, compound) from left to right; the first combinator is ""."""
    steps: list[tuple[str, str]] = []
    combinator = ""
    for word in selector.translate(_COMBINATORS).split():
        if word in (">", "+", "~"):
            combinator = word
        else:
            steps.append((combinator, word))
            combinator = " "
    return steps


def _matched_by_premailer(selector: str) -> bool:
    """premailer's own filter: pseudo-classes other than its sibling filters stay in a <style>
    block, selectors with "*" are skipped."""
    if ":" in selector and ":" + selector.split(":", 1)[1] not in _SIBLING_FILTERS:
        return False
    return "*" not in selector and not selector.startswith(":")


@functools.lru_cache(maxsize=1024)
def _compounds(selector: str) -> tuple[tuple[str, "_Key | None", int, int], ...]:
    """(combinator, key, predicates, length) of each compound of a selector: what
    _selector_work reads of it, which depends on the selector alone (read once per process for
    the selectors of the templates in use)."""
    # Inside quotes or brackets a space or combinator is not one: nothing is known then.
    opaque = any(char in selector for char in "\"'[(")
    return tuple(
        (
            combinator,
            None if opaque else _Key.of(compound),
            sum(map(compound.count, ".#[:")),
            len(compound),
        )
        for combinator, compound in _steps(selector) or [("", selector)]
    )


def _selector_work(selector: str, document: _Document, elements: int, depth: int):
    """(work of one XPath evaluation, the last compound's key, how many elements it matches).

    Each step walks the subtree (descendant), the children (child) or the later siblings
    (sibling combinators) of every element the step before found, tests its classes, id and
    attributes on the elements there (a substring search in each attribute), and libxml2
    merges each one's results into the step's node set with a pairwise duplicate check.
    """
    # Text and comment nodes lie between elements: at most one more per element or comment.
    nodes = 2 * (elements + document.comments) + 1
    work = 0.0
    previous = 1
    key = None
    matches = elements
    for combinator, key, predicates, length in _compounds(selector):
        matches = elements if key is None else key.bound(document)
        if not combinator:  # from the root: every node once, nothing to merge
            visits, merges = 1, 0
        elif combinator == " ":  # a node is in the subtree of its ancestors only
            visits = merges = min(previous, depth)
        elif combinator == ">":  # a node is the child of one context
            visits, merges = 1, 1
        else:  # a node follows every earlier sibling
            visits = merges = previous
        work += visits * (
            nodes * PER_VISIT
            + predicates * elements * PER_PREDICATE
            + bool(predicates) * length * document.attribute_bytes * PER_ATTRIBUTE_CHAR
        )
        work += merges * matches * matches * PER_MERGE
        previous = matches
    if selector.endswith(_SIBLING_FILTERS):
        work += matches * elements * PER_SIBLING
    return work, key, matches


def inline_work(html: str, limit: int) -> int:
    """premailer's work on `html` at most, in microseconds of the development machine.

    Raises TooCostly as soon as the estimate passes `limit`, or when the document holds what no
    estimate bounds.
    """
    meter = _Meter(limit)
    meter.add(PER_DOCUMENT)
    document = _read_html(html, meter)
    for implied in ("html", "head", "body"):  # libxml2 and premailer add them when missing
        document.names[implied] += 1
    sheets = []
    for css in document.stylesheets:
        meter.add(PER_STYLE_ELEMENT + PER_CSS_BYTE * len(css))  # before reading it
        meter.add(_whitespace_work(css))
        sheets.append(_read_css_once(css, meter))
        meter.add(sheets[-1].work)
    elements, depth = document.elements + 3, document.depth + 2  # html, head, body if implied
    keys: list[_Key | None] = []
    for sheet in sheets:
        meter.add(PER_SELECTOR_RULE * sheet.selectors * sheet.rules)
        for rule in sheet.matched:
            # premailer matches a rule with !important declarations twice, once per part.
            evaluations = 2 if rule.important else 1
            declarations = rule.declarations
            for selector in (part.strip() for part in rule.selectors.split(",")):
                if not _matched_by_premailer(selector):
                    continue
                work, key, matches = _selector_work(selector, document, elements, depth)
                keys.append(key)
                meter.add(evaluations * work)
                if matches:
                    # The declarations are parsed again, merged into every match, and parsed
                    # once more on every image (premailer looks for a float there).
                    images = min(matches, document.names["img"] + document.wild)
                    added = ADDED_PER_MATCH + rule.length + ADDED_PER_DECLARATION * declarations
                    meter.add(
                        evaluations * (rule.parse + PER_MATCH * matches)
                        + PER_MATCH_DECLARATION * matches * declarations
                        + images * rule.parse
                        + PER_ADDED_BYTE * matches * added
                    )
    for styled in document.styled:
        # premailer parses the style attribute of what a rule matches, and of every image.
        if styled.name == "img" or any(key is None or key.admits(styled) for key in keys):
            meter.add(PER_CSS_BYTE * len(styled.style))
            parse = _style_attribute_work(styled.style)
            meter.add(parse * (2 if styled.name == "img" else 1))
    return round(meter.total)
