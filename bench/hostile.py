"""Hostile send requests: the worst shapes found against the send API (issue 11), for `make bench`
and the tests.

HTML shapes go in `htmlContent` (each under SEND_MAX_CONTENT_BYTES); request shapes are whole
bodies written by hand (deep nesting cannot go through json.dumps), each under MAX_REQUEST_BYTES.
"""

import json

from sends.html_limits import (
    MAX_ATTRIBUTES,
    MAX_ATTRIBUTES_PER_TAG,
    MAX_LINKS,
    MAX_TAGS,
    html_problem,
)
from sends.inline_cost import TooCostly, inline_work

BASE = {"to": "user@example.com", "subject": "Hostile", "content": "Hi"}


def declarations(count: int, suffix: str = "") -> str:
    return ";".join(f"x-{i}:1{suffix}" for i in range(count))


# Shapes that cost premailer, cssutils or libxml2 more than a linear amount, or had no bound.
HTML = {
    # The two reproductions.
    "issue: one rule of 4,000 declarations": (
        "<style>p{" + "".join(f"x-{i}:1;" for i in range(4000)) + "}</style><p>x</p>"
    ),
    "issue: 16,000 unclosed <style> tags": "<style>" * 16000,
    "declarations in @media": (
        "<style>@media screen{p{" + declarations(3000) + "}}</style><p>x</p>"
    ),
    "!important declarations": "<style>p{" + declarations(3000, "!important") + "}</style><p>x</p>",
    "declarations in a style attribute": (
        f'<style>p{{color:red}}</style><p style="{declarations(3000)}">x</p>'
    ),
    "rules in one sheet": "<style>" + "".join(f".c{i}{{x:1}}" for i in range(8000)) + "</style>",
    "rules × elements": (
        "<style>" + "".join(f"p{{x-{i}:1}}" for i in range(2000)) + "</style>" + "<p>x</p>" * 2000
    ),
    "descendant selectors on deep nesting": (
        "<style>div p{color:red}</style>" + "<div>" * 200 + "<p>x</p>" * 20000
    ),
    "sibling combinators": "<style>p ~ p{color:red}</style><div>" + "<p>x</p>" * 4000,
    "long class name against a long class attribute": (
        "<style>." + "a" * 10000 + 'b{x:1}</style><p class="' + "a" * 500000 + '">x</p>'
    ),
    "whitespace run in a leftover rule": (
        '<style>a:hover{content:"' + " " * 200000 + '"}</style><a>x</a>'
    ),
    "nested functions": "<style>p{a:" + "f(" * 30 + ")" * 30 + "}</style><p>x</p>",
    "backslashes in url(": "<style>p{background:url(" + "\\" * 60 + "}</style><p>x</p>",
    "escapes in an unterminated string": '<style>p{content:"' + "\\41" * 40 + "}</style><p>x</p>",
    "@import of a remote stylesheet": (
        '<style>@import url("http://192.0.2.1/x.css"); p{color:red}</style><p>x</p>'
    ),
    "nesting deeper than libxml2 keeps": "<style>p{color:red}</style>" + "<div>" * 20000 + "x",
    "attributes on one tag": (
        "<style>p{color:red}</style><p " + " ".join(f"a{i}=1" for i in range(100000)) + ">x</p>"
    ),
    # Tracking reads every link with lxml too: many attributes on a link reach it.
    "attributes on a link": (
        '<a href="https://example.com/" ' + " ".join(f"a{i}=1" for i in range(40000)) + ">x</a>"
    ),
    "elements": "<style>p{color:red}</style>" + "<p>x</p>" * 120000,
    # Within the bounds of sends.html_limits: the most of each that a document may hold.
    "links at the bound, long targets": "".join(
        f'<a href="https://example.com/{i}/{"p" * 400}?q={i}">x</a>' for i in range(MAX_LINKS)
    ),
    "links with 100 attributes each, attributes at the bound": "".join(
        f'<a href="https://example.com/{i}" '
        + " ".join(f"a{j}=1" for j in range(MAX_ATTRIBUTES_PER_TAG - 1))
        + ">x</a>"
        for i in range(MAX_ATTRIBUTES // MAX_ATTRIBUTES_PER_TAG)
    ),
    "tags at the bound": '<a href="https://example.com/">x</a>' + "<p>x</p>" * (MAX_TAGS // 2 - 1),
    "nesting at the bound": '<a href="https://example.com/">x</a>' + "<div>" * (MAX_TAGS - 2) + "x",
    # Each link's text holds the text of the links nested in it (libxml2 keeps 255 levels).
    "nested links around a large text": (
        '<a href="https://example.com/"><div>' * 100 + "x" * 900000
    ),
}


def html_body(html: str) -> str:
    return json.dumps({**BASE, "htmlContent": html})


# Shapes that cost the JSON parser or the validation before any answer.
REQUESTS = {
    "deep JSON nesting": (
        json.dumps(BASE)[:-1] + ', "metadata": ' + "[" * 100000 + "]" * 100000 + "}"
    ),
    "100,000 attachments items": (
        json.dumps(BASE)[:-1] + ', "attachments": [' + ",".join(["{}"] * 100000) + "]}"
    ),
    "300,000 unknown fields": (
        json.dumps(BASE)[:-1] + "," + ",".join(f'"f{i}":0' for i in range(300000)) + "}"
    ),
}


def bodies() -> dict[str, str]:
    """Every hostile request body, by name."""
    return {**{name: html_body(html) for name, html in HTML.items()}, **REQUESTS}


# Families whose cost grows with n, for the largest document the budget accepts: the slowest
# inlining the bound lets through (README, "CSS inlining").
FAMILIES = {
    "elements matched by one rule": lambda n: (
        "<style>p{color:red;margin:0}</style>" + "<p>x</p>" * n
    ),
    "declarations in @media": lambda n: (
        "<style>@media screen{p{" + declarations(n) + "}}</style><p>x</p>"
    ),
    "rules in @media": lambda n: (
        "<style>@media screen{"
        + "".join(f".c{i}{{a:1;b:2}}" for i in range(n))
        + "}</style><p>x</p>"
    ),
    "whitespace run in a leftover rule": lambda n: (
        '<style>a:hover{content:"' + " " * n + '"}</style><a>x</a>'
    ),
    "selectors × elements": lambda n: (
        "<style>" + "".join(f".c{i}{{x:1}}" for i in range(20)) + "</style>" + "<p>x</p>" * n
    ),
    # As many rules as the budget lets through, on as many elements as the tag bound allows:
    # slower than 20 rules on more elements (premailer's work is per rule and element).
    "rules × elements at the tag bound": lambda n: (
        "<style>"
        + "".join(f".c{i}{{x:1}}" for i in range(n))
        + "</style>"
        + "<p>x</p>" * (MAX_TAGS // 2 - 10)
    ),
    "class selectors × class attributes": lambda n: (
        "<style>.a{color:red;margin:0}</style>" + '<p class="a b c d e f g h">x</p>' * n
    ),
}


def largest_accepted(family, limit: int) -> str:
    """The largest document of `family` whose estimate stays within `limit` (and that the
    bounds of sends.html_limits accept)."""

    def accepted(n: int) -> bool:
        if html_problem(family(n)) is not None:
            return False
        try:
            inline_work(family(n), limit)
        except TooCostly:
            return False
        return True

    low, high = 1, 2
    while accepted(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(middle) else (low, middle)
    return family(low)
