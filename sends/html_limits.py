"""The shape of `htmlContent` that the send path reads in bounded time, checked before anything
is stored.

Every accepted send has its HTML read by tracking's scanner (Python sees each tag), by libxml2
when it has links (tracking matches their text) or a `<style>` block (premailer), and has every
tracked link signed. Each is linear in the tags, attributes and links but for one term: libxml2
compares every attribute of a tag with every other (40,000 attributes on one link: 5.5 s). So
the tags, the attributes (of a tag and in all) and the links are bounded, far above what real
mail holds (the largest newsletters have a few thousand elements, a handful of attributes on
most tags, a few dozen at most, and a few hundred links), and a document past a bound is
refused with a 400 before anything else runs.

Tags and links are counted as the characters that may open one, in C: every "<" followed by a
letter, "/", "!" or "?" (start and end tags, comments, doctypes), every "<a" followed by a space,
"/" or ">". That counts more than a browser reads (markup inside comments and attribute values),
never fewer, and a client can count it the same way. Attributes are counted on tracking's own
reading of the tags (`sends.tracking.attribute_texts`: one pass of its tokenizer's pattern, in
C), and only tags long enough to hold too many are counted one by one.
"""

import re

from sends.tracking import attribute_texts, count_attributes

# 10,000 tags is about 300 KB of markup, three times what Gmail shows before it clips a mail;
# past it, the tags alone cost the send path more than 20 ordinary sends (issue 11).
MAX_TAGS = 10_000
MAX_ATTRIBUTES_PER_TAG = 100
MAX_ATTRIBUTES = 30_000  # on all tags together
MAX_LINKS = 1_000

_MARKUP_OPENER = re.compile(r"<[A-Za-z/!?]")
_LINK_OPENER = re.compile(r"<[aA][\t\n\f\r />]")
# An attribute takes at least two characters (a space or "/", and a name).
_LONG = 2 * MAX_ATTRIBUTES_PER_TAG


def html_problem(html: str) -> str | None:
    """Why `html` cannot be sent, as a message for the client; None when it fits the bounds."""
    # str.count first: most documents hold fewer "<" than either bound.
    if html.count("<") > MAX_TAGS and len(_MARKUP_OPENER.findall(html)) > MAX_TAGS:
        return f"At most {MAX_TAGS} tags (start and end tags, comments and doctypes)."
    links = html.count("<a") + html.count("<A")
    if links > MAX_LINKS and len(_LINK_OPENER.findall(html)) > MAX_LINKS:
        return f"At most {MAX_LINKS} links (<a> tags)."
    texts = attribute_texts(html)  # at most MAX_TAGS, counted above
    if any(count_attributes(text) > MAX_ATTRIBUTES_PER_TAG for text in texts if len(text) > _LONG):
        return f"At most {MAX_ATTRIBUTES_PER_TAG} attributes on one tag."
    # ">" ends no attribute but the last of a tag, and starts none.
    if count_attributes(">".join(texts)) > MAX_ATTRIBUTES:
        return f"At most {MAX_ATTRIBUTES} attributes in all."
    return None
