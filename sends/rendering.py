"""Turns a request's content into the parts of the mail: CSS inlining, then tracking.

One module so that every change to the HTML happens in one place and in one order.
"""

import contextvars
import functools
import logging
import re

import css_inline
import cssutils
import premailer.premailer
from django.conf import settings
from premailer import Premailer
from premailer.merge_style import merge_styles

from sends import tracking
from sends.inline_cost import TooCostly, inline_work

logger = logging.getLogger("fluxomail.rendering")


def _no_fetch(url: str) -> None:
    """cssutils' fetcher for @import: nothing is ever loaded."""
    return None


@functools.lru_cache(maxsize=16)
def _stylesheet(css: str, validate: bool) -> cssutils.css.CSSStyleSheet:
    # premailer's own cache keeps 128 parsed sheets (about 100 times their text each) keyed by
    # text any sender chooses; a few are enough for the templates a service sends repeatedly.
    return cssutils.CSSParser(fetcher=_no_fetch, validate=validate).parseString(css)


class _Premailer(Premailer):
    """premailer with a cssutils parser that never fetches: cssutils' default loads every
    @import itself (http URLs, and files relative to the working directory), without a
    timeout, whatever premailer's allow_network says.

    Every instance has the same options (_OPTIONS), so what premailer derives from a
    stylesheet's text alone is kept for the next mail with the same <style> block: the rules
    serialised back from cssutils' objects (about half of premailer's work on a 10 KB mail) and
    the HTML attributes (bgcolor, width, ...) that a style turns into, and the text of the rules
    left in <style> (@media, pseudo-classes).
    """

    def _parse_css_string(self, css_body, validate=True):
        return _stylesheet(css_body, validate)

    def _parse_style_rules(self, css_body, ruleset_index):
        rules, leftover = _style_rules(css_body, ruleset_index)
        return list(rules), leftover.copy()

    def _css_rules_to_string(self, rules):
        if not isinstance(rules, _Leftover):
            return super()._css_rules_to_string(rules)
        # premailer marks every declaration of the stylesheet's @media rules !important, then
        # writes them: once done, the same objects give the same text every time.
        if rules.text[0] is None:
            rules.text[0] = super()._css_rules_to_string(rules)
        return rules.text[0]

    def _style_to_basic_html_attributes(self, element, style_content, force=False):
        for name, value in _basic_attributes(style_content):
            if force or name not in element.attrib:
                element.attrib[name] = value


_OPTIONS = {
    "allow_network": False,
    "allow_loading_external_files": False,
    "disable_validation": True,
    "keep_style_tags": False,
}
# Once here rather than per mail (premailer's cssutils_logging_level): setting a logger's level
# empties the cache of every logger of the process.
cssutils.log.setLevel(logging.CRITICAL)
# Reads a stylesheet or a style with _OPTIONS, for the caches below.
_READER = _Premailer(**_OPTIONS)


class _Leftover(list):
    """The rules premailer leaves in <style>, and their text once written (shared by the copies
    of one cached entry)."""

    text: list[str | None]

    def copy(self) -> "_Leftover":
        other = _Leftover(self)
        other.text = self.text
        return other


@functools.lru_cache(maxsize=16)
def _style_rules(css_body: str, ruleset_index: int) -> tuple[tuple, _Leftover]:
    # premailer's rules are tuples of text; its leftovers (@media rules) are the cached
    # stylesheet's own objects, as without this cache.
    rules, leftover = Premailer._parse_style_rules(_READER, css_body, ruleset_index)
    kept = _Leftover(leftover)
    kept.text = [None]
    return tuple(rules), kept


class _Attributes:
    """Stands in for an element: collects the attributes premailer would set on it."""

    def __init__(self) -> None:
        self.attrib: dict[str, str] = {}


@functools.lru_cache(maxsize=256)
def _basic_attributes(style_content: str) -> tuple[tuple[str, str], ...]:
    element = _Attributes()
    Premailer._style_to_basic_html_attributes(_READER, element, style_content, force=True)
    return tuple(element.attrib.items())


# Within one mail, the style premailer merged for an element, by what it merged it from.
_merged: contextvars.ContextVar[dict | None] = contextvars.ContextVar("merged", default=None)


def _merge_styles(inline_style, new_styles, classes, remove_unset_properties=False):
    """premailer's merge_styles, once per distinct input within one mail: the elements of a
    template share a few styles (a hundred paragraphs of one class), and merging was half of
    premailer's Python work. Outside _premailer() it is premailer's own function."""
    memo = _merged.get()
    if memo is None:
        return merge_styles(inline_style, new_styles, classes, remove_unset_properties)
    key = (inline_style, tuple(map(tuple, new_styles)), tuple(classes), remove_unset_properties)
    merged = memo.get(key)
    if merged is None:
        merged = memo[key] = merge_styles(
            inline_style, new_styles, classes, remove_unset_properties
        )
    return merged


premailer.premailer.merge_styles = _merge_styles

# premailer strips "!important" from the rules it leaves in <style> with r"\s*!important", which
# tries every position of a whitespace run and scans the rest of it (7,000 spaces: 70 ms). A
# match can only start where a run starts (the same run then ends at the same place), so this
# pattern finds the same matches, and scans each run once.
premailer.premailer._importants = re.compile(r"(?<!\s)\s*+!important")


def _premailer(html: str) -> str:
    token = _merged.set({})  # kept for this mail only: nothing outlives it
    try:
        return _Premailer(html, **_OPTIONS).transform()
    finally:
        _merged.reset(token)


# What css-inline cannot inline (pseudo-classes, @media) stays in the <style> block it came from,
# as premailer leaves it; <link> stylesheets stay as written and are never loaded.
_CSS_INLINE = css_inline.CSSInliner(
    keep_style_tags=True, keep_link_tags=True, load_remote_stylesheets=False
)

ENGINES = {"premailer": _premailer, "css-inline": _CSS_INLINE.inline}


def inline_css(html: str) -> str:
    """Moves <style> rules into style attributes with the CSS_INLINER engine; never fetches.

    When inlining could cost more than SEND_MAX_INLINE_WORK (sends.inline_cost) the HTML is
    sent as written: the send must not hold a worker on a hostile stylesheet, and mail clients
    apply a <style> block themselves.
    """
    if "<style" not in html.lower():
        # Nothing to inline: skip the parse and serialisation, and keep the HTML as written.
        return html
    try:
        inline_work(html, settings.SEND_MAX_INLINE_WORK)
    except TooCostly as exc:
        logger.warning("CSS inlining skipped: %s", exc)
        return html
    try:
        return ENGINES[settings.CSS_INLINER](html)
    except Exception as exc:
        # CSS or markup the engine cannot digest: send the HTML as written rather than failing
        # the send; clients still apply the <style> block themselves.
        logger.warning("CSS inlining skipped: %s", type(exc).__name__)
        return html


def render_html(html: str, *, send, policy) -> str:
    """The text/html part as sent: CSS inlined first, then tracking when the policy allows it."""
    return tracking.inject(inline_css(html), send=send, policy=policy)
