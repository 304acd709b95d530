"""Turns a request's content into the parts of the mail: CSS inlining, then tracking.

One module so that every change to the HTML happens in one place and in one order.
"""

import logging

from premailer import Premailer

from sends import tracking

logger = logging.getLogger("fluxomail.rendering")


def inline_css(html: str) -> str:
    """Moves <style> rules into style attributes; never fetches a remote stylesheet."""
    if "<style" not in html.lower():
        # Nothing to inline: skip the parse and serialisation, and keep the HTML as written.
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
