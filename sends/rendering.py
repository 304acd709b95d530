"""Turns a request's content into the parts of the mail: CSS inlining, then tracking.

One module so that every change to the HTML happens in one place and in one order.
"""

import logging
import re

from django.conf import settings
from premailer import Premailer

from sends import tracking

logger = logging.getLogger("fluxomail.rendering")

_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_COMBINATOR = re.compile(r"[\s>+~]+")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VOID |= {"track", "wbr"}
# libxml2 refuses to nest deeper than this without its huge-tree option.
_MAX_DEPTH = 256
# premailer's cost per element that does not depend on the stylesheet (parse, style merge,
# serialisation), in selector-part units; measured, see the README ("CSS inlining").
_PER_ELEMENT = 10
# A descendant step of a selector walks the subtree of every node the previous step found:
# ~ depth² per selector part on a deep chain of elements. Measured as 1/16 of a work unit.
_DEPTH_SQUARED_DIVISOR = 16


def _tags_and_depth(html: str) -> tuple[int, int]:
    """Opening tags, and the deepest nesting (void elements do not nest; unclosed ones count)."""
    tags = depth = deepest = 0
    for match in _TAG.finditer(html):
        if match.group(1):
            depth = max(0, depth - 1)
        elif match.group(2).lower() not in _VOID:
            tags += 1
            depth += 1
            deepest = max(deepest, depth)
        else:
            tags += 1
    return tags, min(deepest, _MAX_DEPTH)


def inline_work(html: str) -> int:
    """A cheap estimate of premailer's work on `html`, in units of SEND_MAX_INLINE_WORK.

    premailer matches every selector against the document (~ selector parts × elements, plus
    ~ parts × depth² for descendant combinators on deeply nested markup) and merges the
    declarations of every match into the element's style attribute (~ selectors² per element);
    each element also costs a fixed amount. Plain string scans only: this runs before any
    parsing, on hostile input too.
    """
    css = _CSS_COMMENT.sub(" ", " ".join(_STYLE_BLOCK.findall(html)))
    selectors = parts = 0
    # The text before each "{" (after the previous "}") is a rule's selector list or an at-rule
    # prelude; counting preludes as selectors only overestimates. split/rpartition keep it linear.
    for piece in css.split("{")[:-1]:
        for selector in piece.rpartition("}")[2].split(","):
            selectors += 1
            parts += max(1, len(_COMBINATOR.split(selector.strip())))
    tags, depth = _tags_and_depth(html)
    return (parts + _PER_ELEMENT) * (tags + selectors) + parts * depth**2 // _DEPTH_SQUARED_DIVISOR


def inline_css(html: str) -> str:
    """Moves <style> rules into style attributes; never fetches a remote stylesheet.

    Above SEND_MAX_INLINE_WORK (see inline_work) the HTML is sent as written: the send must not
    hang a worker on a hostile stylesheet, and mail clients apply a <style> block themselves.
    """
    if "<style" not in html.lower():
        # Nothing to inline: skip the parse and serialisation, and keep the HTML as written.
        return html
    work = inline_work(html)
    if work > settings.SEND_MAX_INLINE_WORK:
        logger.warning(
            "CSS inlining skipped: estimated work %d over SEND_MAX_INLINE_WORK %d",
            work,
            settings.SEND_MAX_INLINE_WORK,
        )
        return html
    try:
        return Premailer(
            html,
            allow_network=False,
            allow_loading_external_files=False,
            disable_validation=True,
            keep_style_tags=False,
            cssutils_logging_level="CRITICAL",
        ).transform()
    except Exception as exc:
        # CSS or markup premailer cannot digest: send the HTML as written rather than failing
        # the send; clients still apply the <style> block themselves.
        logger.warning("CSS inlining skipped: %s", type(exc).__name__)
        return html


def render_html(html: str, *, send, policy) -> str:
    """The text/html part as sent: CSS inlined first, then tracking when the policy allows it."""
    return tracking.inject(inline_css(html), send=send, policy=policy)
