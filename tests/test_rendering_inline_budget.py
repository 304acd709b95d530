"""CSS inlining stays bounded: above SEND_MAX_INLINE_WORK, or when the document holds what no
estimate bounds, the HTML goes out as written; both engines are held to the same bound."""

import logging
import random
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cssutils
import premailer
import premailer.cache
import premailer.premailer
import pytest
from django.core import mail
from lxml import etree

from bench import hostile
from sends import inline_cost, rendering
from sends.inline_cost import TooCostly, inline_work
from sends.models import Message, Policy
from sends.rendering import ENGINES, _no_fetch, inline_css
from tests.test_settings import load_settings

SEND = "/api/v1/emails/send"

STYLED = "<html><head><style>p { color: #ff0000 }</style></head><body><p>Hi</p></body></html>"
INLINED = {
    "premailer": '<p style="color:#f00">Hi</p>',
    "css-inline": '<p style="color: #ff0000;">Hi</p>',
}
# An ordinary transactional template: a receipt in the style of the open-source Postmark
# templates (4.5 KB of CSS, 44 rules, two @media blocks, 120 elements).
RECEIPT = (Path(__file__).parent / "samples" / "receipt.html").read_text()
# The issue's first reproduction: 35 KB that took premailer 30 to 57 seconds.
ISSUE_STYLESHEET = hostile.HTML["issue: one rule of 4,000 declarations"]


@pytest.fixture(params=["premailer", "css-inline"])
def engine(request, settings) -> str:
    settings.CSS_INLINER = request.param
    return request.param


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="fluxomail.rendering")
    return caplog


def forget_readings() -> None:
    """Empties what inline_cost keeps of the stylesheets and selectors it has read."""
    inline_cost._sheets.clear()
    for kept in (
        inline_cost._whitespace_work,
        inline_cost._compounds,
        inline_cost._style_attribute_work,
    ):
        kept.cache_clear()


class WorkLimit(BaseException):
    """Raised from the profiler: not an Exception, so that no `except Exception` swallows it."""


def python_calls(function, *args, limit: int = sys.maxsize) -> int:
    """How many Python and C functions `function(*args)` calls, with cold caches: deterministic
    work, unlike time. Past `limit` the run is stopped, so that unbounded work fails fast."""
    premailer.cache.cache.clear()
    rendering._stylesheet.cache_clear()
    rendering._style_rules.cache_clear()
    rendering._basic_attributes.cache_clear()
    forget_readings()
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1
            if calls > limit:
                raise WorkLimit(f"more than {limit} calls")

    sys.setprofile(count)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return calls


# Through the API --------------------------------------------------------------------------------


@pytest.fixture
def _no_tracking(acme):
    # The open pixel carries a style attribute of its own: without it the HTML as sent is
    # exactly what inlining produced.
    Policy.objects.filter(organization=acme).update(track_opens=False, track_clicks=False)


def html_sent(api, key, body) -> str:
    response = api.post(SEND, body, format="json", **key.bearer)
    assert response.status_code == 200, response.content
    [sent] = mail.outbox
    [(html, mimetype)] = sent.alternatives
    assert mimetype == "text/html"
    assert Message.objects.get().html == html
    return html


@pytest.mark.usefixtures("_no_tracking")
def test_a_normal_styled_mail_is_inlined(api, send_key, seed_body, engine):
    seed_body["htmlContent"] = STYLED

    html = html_sent(api, send_key, seed_body)

    assert INLINED[engine] in html
    assert ("<style" in html) == (engine == "css-inline")  # css-inline keeps the block


@pytest.mark.usefixtures("_no_tracking")
def test_the_issue_stylesheet_is_sent_as_written_with_a_warning(
    api, send_key, seed_body, engine, warnings
):
    seed_body["htmlContent"] = ISSUE_STYLESHEET

    html = html_sent(api, send_key, seed_body)

    assert html == ISSUE_STYLESHEET
    [record] = warnings.records
    assert record.getMessage() == "CSS inlining skipped: estimated work over 150000"


@pytest.mark.usefixtures("_no_tracking")
def test_the_budget_is_the_setting(api, send_key, seed_body, settings, engine):
    settings.SEND_MAX_INLINE_WORK = inline_work(STYLED, 10**9) - 1
    seed_body["htmlContent"] = STYLED

    html = html_sent(api, send_key, seed_body)

    assert html == STYLED


def test_an_ordinary_template_is_inlined(engine):
    inlined = inline_css(RECEIPT)

    assert 'class="f-fallback button button--green"' in inlined
    assert inlined.count("style=") > 60


ATTRIBUTES = (
    "<html><head><style>td{background-color:#abc;width:100px;text-align:center}"
    "@media (max-width:600px){td{width:50px}} a:hover{color:red} p{color:blue !important}"
    '</style></head><body><table><tr><td style="height:20px">x</td><td>y</td></tr></table>'
    '<p style="color:green">p</p><a href="#">a</a></body></html>'
)


@pytest.mark.parametrize("html", [RECEIPT, ATTRIBUTES], ids=["receipt", "attributes"])
def test_premailer_inlines_a_stylesheet_seen_before_as_premailer_itself_does(html):
    # What rendering keeps between mails (the rules of a stylesheet, the attributes of a style)
    # changes nothing in the result, the first time or the next.
    class Plain(premailer.Premailer):
        def _parse_css_string(self, css_body, validate=True):
            return rendering._stylesheet(css_body, validate)

    python_calls(lambda: None)  # cold caches
    expected = Plain(html, **rendering._OPTIONS).transform()

    assert [rendering._premailer(html) for _ in range(2)] == [expected, expected]
    assert 'bgcolor="#aabbcc"' in rendering._premailer(ATTRIBUTES)


def test_important_is_stripped_from_kept_rules_as_premailer_strips_it():
    # rendering replaces premailer's r"\s*!important" (quadratic over a whitespace run) with a
    # pattern that must remove exactly the same text.
    premailers = re.compile(r"\s*!important")
    rng = random.Random(7)
    pieces = [" ", "\t", "\n", "\u00a0", "!important", "!", "important", "x", ";", " !important"]
    for _ in range(5000):
        css = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert premailer.premailer._importants.sub("", css) == premailers.sub("", css), css

    html = "<style>a:hover{color:red" + " " * 20 + '!important}</style><a href="#">a</a>'
    assert "a:hover {color:red}" in rendering._premailer(html).replace("\n", "")


# Bounded work (the issue's item 1) ---------------------------------------------------------


@pytest.mark.parametrize("shape", list(hostile.HTML), ids=list(hostile.HTML))
def test_inlining_a_hostile_shape_costs_at_most_twice_an_ordinary_template(shape, settings):
    settings.CSS_INLINER = "premailer"
    ordinary = python_calls(inline_css, RECEIPT)

    python_calls(inline_css, hostile.HTML[shape], limit=2 * ordinary)


@pytest.mark.parametrize(
    "html",
    [
        "<style>p{" + hostile.declarations(1000) + "}</style><p>x</p>",
        "<style>@media screen{p{" + hostile.declarations(1000) + "}}</style><p>x</p>",
        "<style>a:hover{" + hostile.declarations(1000) + "}</style><a>x</a>",
        f'<style>p{{color:red}}</style><p style="{hostile.declarations(1000)}">x</p>',
        "<style>p{a:" + " 1" * 900 + "}</style><p>x</p>",
        # Work in C, which no count of calls sees: libxml2's XPath and attribute checks, and
        # premailer's regular expression.
        "<style>p ~ p{color:red}</style><div>" + "<p>x</p>" * 1500,
        "<style>." + "a" * 5000 + 'b{x:1}</style><p class="' + "a" * 200000 + '">x</p>',
        "<style>p{color:red}</style><p " + " ".join(f"a{i}=1" for i in range(30000)) + ">x</p>",
        '<style>a:hover{content:"' + " " * 30000 + '"}</style><a>x</a>',
    ],
    ids=[
        "declarations squared",
        "declarations in @media",
        "declarations in a pseudo-class rule",
        "declarations in a style attribute",
        "tokens of one value",
        "sibling combinators",
        "a long class name against a long class attribute",
        "attributes of one tag",
        "a whitespace run in a rule kept in <style>",
    ],
)
def test_shapes_the_old_estimate_let_through_are_sent_as_written(html, engine):
    assert inline_css(html) == html


# The estimate itself (the issue's item 2) -----------------------------------------------------


def test_css_in_a_style_element_left_open_is_counted(engine):
    # libxml2 reads an unclosed <style> to the end: its CSS is premailer's to parse.
    html = "<p>x</p><style>p{" + hostile.declarations(1000) + "}"

    assert inline_css(html) == html


def test_what_inlining_adds_to_every_matched_element_is_counted():
    # The same rule, with a value 50 bytes longer, matched by 100 elements: the reading of the
    # CSS, and the bytes premailer writes into each element's style attribute.
    def estimate(value: str) -> int:
        return inline_work(f"<style>p{{color:{value}}}</style>" + "<p>x</p>" * 100, 10**9)

    longer = estimate("r" * 51) - estimate("r")

    per_byte = inline_cost.PER_BYTE + inline_cost.PER_CSS_BYTE + 100 * inline_cost.PER_ADDED_BYTE
    assert abs(longer - 50 * per_byte) <= 1


def test_the_whitespace_of_a_rule_counts_once_in_what_inlining_adds():
    spaced, compact = (
        inline_work(f"<style>p{{{css}}}</style>" + "<p>x</p>" * 100, 10**9)
        for css in ("color:  \n\t  red", "color: red")
    )

    # Five more bytes to read, none more in any of the 100 style attributes.
    assert abs(spaced - compact - 5 * (inline_cost.PER_BYTE + inline_cost.PER_CSS_BYTE)) <= 1


def test_tags_that_repeat_an_attribute_text_are_each_counted():
    html = "<style>.a{color:red}</style>" + '<p class="a b" style="margin:0">x</p>' * 3

    document = inline_cost._read_html(html, inline_cost._Meter(10**9))

    assert document.elements == 4
    assert document.classes["a"] == document.classes["b"] == 3
    assert [(s.name, s.classes, s.style) for s in document.styled] == [
        ("p", ("a", "b"), "margin:0")
    ] * 3


def test_the_issue_unclosed_style_tags_are_refused_from_the_bytes_of_their_css():
    with pytest.raises(TooCostly, match="estimated work over 200000"):
        inline_work(hostile.HTML["issue: 16,000 unclosed <style> tags"], 200_000)


def test_the_estimate_stops_as_soon_as_it_passes_the_budget():
    small, large = ("<style>p{color:red}</style>" + "<p>x</p>" * n for n in (10**4, 10**5))

    calls = python_calls(lambda: pytest.raises(TooCostly, inline_work, small, 1000))

    python_calls(lambda: pytest.raises(TooCostly, inline_work, large, 1000), limit=calls)


def test_the_estimate_is_the_same_from_what_was_read_before():
    # inline_cost keeps stylesheets read to their end, and what it reads of selectors and style
    # attributes: an estimate from them must be the one a first reading gives, a refusal the
    # same refusal, whatever budget the sheet was read under before.
    def outcome(html: str, limit: int) -> tuple[str, object]:
        try:
            return "work", inline_work(html, limit)
        except TooCostly as exc:
            return "refused", str(exc)

    ordinary = [
        RECEIPT,
        STYLED,
        '<style>p{color:red}</style><p style="margin:0" class="a">x</p><img style="b:1">',
        '<style>div > p.a + p{x:1} a:hover{y:2} [title="x"] b{z:3}</style><div><p>x</p></div>',
    ]
    hostile_shapes = [html for name, html in hostile.HTML.items() if "<style" in html]
    for html, limits in [
        *((html, [10**9, 150_000, 20_000, 5_000]) for html in ordinary),
        *((html, [150_000, 20_000]) for html in hostile_shapes),
    ]:
        for first, then in [(limit, limit) for limit in limits] + [(limits[0], limits[-1])]:
            forget_readings()
            expected = outcome(html, then)
            forget_readings()
            outcome(html, first)

            assert outcome(html, then) == expected, (html[:80], first, then)


def test_an_ordinary_template_estimates_within_the_default_budget():
    from fluxomail.settings import SEND_MAX_INLINE_WORK

    assert SEND_MAX_INLINE_WORK == 150_000
    assert inline_work(RECEIPT, 10**9) < SEND_MAX_INLINE_WORK


# What no estimate bounds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        (
            "<style>p{background:url(" + "\\" * 24 + "}</style><p>x</p>",
            "a backslash in CSS",
        ),
        ('<style>p{content:"' + "\\41" * 16 + "}</style><p>x</p>", "a backslash in CSS"),
        (
            "<style>p{background:url(" + "\t" * 400 + "x y)}</style><p>x</p>",
            "a url( in CSS that cssutils may not close",
        ),
        (
            "<style>p{a:" + "f(" * 12 + ")" * 12 + "}</style><p>x</p>",
            "brackets nested deeper than 4 in CSS",
        ),
        (
            "<style>p{color:red}</style>" + "<div>" * 300 + "<p>hello</p>" + "</div>" * 300,
            "nested deeper than 250 elements",
        ),
    ],
    ids=[
        "cssutils backtracks over backslashes in url(",
        "cssutils backtracks over escapes in a string",
        "cssutils backtracks over tabs in url(",
        "cssutils backtracks over nested functions",
        "libxml2 drops what is nested deeper",
    ],
)
def test_what_no_estimate_bounds_is_sent_as_written(html, reason, engine, warnings):
    assert inline_css(html) == html
    [record] = warnings.records
    assert record.getMessage() == f"CSS inlining skipped: {reason}"


def test_css_inline_never_sees_nesting_that_crashes_it(settings):
    # css-inline 0.24 overflows its stack (the process dies) around 12,000 levels.
    settings.CSS_INLINER = "css-inline"
    html = hostile.HTML["nesting deeper than libxml2 keeps"]

    assert inline_css(html) == html


class _CountingHandler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"p { color: blue }")

    def log_message(self, *args):
        pass


@pytest.fixture
def stylesheet_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    _CountingHandler.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _CountingHandler.requests
    server.shutdown()
    server.server_close()


def test_an_import_in_a_stylesheet_is_never_fetched(stylesheet_server, engine):
    # cssutils' own fetcher loads every @import (and files from the working directory), with no
    # timeout, whatever premailer's allow_network says.
    url, requests = stylesheet_server
    html = (
        f'<style>@import url("{url}/a.css"); @import "{url}/b.css"; p {{ color: #ff0000 }}'
        f'</style><link rel="stylesheet" href="{url}/c.css"><p>Hi</p>'
    )

    inlined = inline_css(html)

    assert INLINED[engine] in inlined
    assert requests == []


# The reading follows libxml2 and cssutils ---------------------------------------------------


def test_every_start_tag_said_to_close_an_element_closes_it_in_lxml():
    for closed, closers in inline_cost._CLOSED_BY.items():
        for closer in closers:
            root = etree.fromstring(f"<div><{closed} id=a><{closer} id=b>", etree.HTMLParser())
            a, b = root.find(".//*[@id='a']"), root.find(".//*[@id='b']")
            assert b.getparent() is a.getparent(), (closed, closer)


_HTML_PIECES = [
    *"<p> </p> <div> </div> <b> </b> <td> </td> <tr> </tr> <table> </table> <li> </li>".split(),
    *"<ul> <style> </style> </style </stylex> <script> </script> <title> </title> <!--".split(),
    *"--> --!> <! <? > < </ </> x = <img> <br> <hr/> <div/> <plaintext> <xmp> <noscript>".split(),
    *"<dd> <dt> <dl> <option> <select> <thead> <tbody> <tfoot> <h1> <html> <body> <head>".split(),
    "<p class=a>",
    "<p class='a b'>",
    '<p class="c&amp;">',
    "<p id=x>",
    '<span style="color:red">',
    "<P CLASS=A>",
    "<p a='>'>",
    '<p a=">">',
    "<p/a>",
    "<p =x>",
    "<style title='</style>'>",
    "p{color:red}",
    " ",
    "\n",
    '"',
    "'",
]


def _lxml_reading(html: str):
    root = etree.fromstring(html, etree.HTMLParser())
    elements = [] if root is None else [e for e in root.iter() if isinstance(e.tag, str)]

    def depth(element):
        return 1 + (depth(element.getparent()) if element.getparent() is not None else 0)

    return elements, max(map(depth, elements), default=0)


def test_the_reading_never_counts_less_than_lxml_builds():
    """Elements, depth, names, classes and style text: what the estimate is an upper bound of."""
    rng = random.Random(11)
    for _ in range(3000):
        html = "".join(rng.choice(_HTML_PIECES) for _ in range(rng.randint(1, 60))).strip()
        try:
            document = inline_cost._read_html(html, inline_cost._Meter(10**12))
        except TooCostly:
            continue
        elements, depth = _lxml_reading(html)
        assert len(elements) <= document.elements + 3, html
        assert depth <= document.depth + 2, html
        for element in elements:
            name = element.tag
            assert sum(e.tag == name for e in elements) <= document.names[name] + (
                name in ("html", "head", "body")
            ), html
            for class_name in set((element.get("class") or "").split()):
                real = sum(class_name in (e.get("class") or "").split() for e in elements)
                assert real <= document.classes[class_name.lower()] + document.wild, html
            if name == "style" and (element.text or "").strip():
                assert any(element.text.strip() in text for text in document.stylesheets), html


_CSS_PIECES = [
    *"p .a #b a:hover , { } ; : color red 1px x-1 x-2 ( ) [ ] f( !important @media >".split(),
    *"url(a) url(a;b) /* */ <!-- --> * + ~ b{x:1} a{ #fff".split(),
    " ",
    "\n",
    '"',
    "'",
    '"x;y"',
    "'}'",
    "/* c */",
    'url("x")',
    "@media screen{",
    "@import 'x';",
    "@font-face",
    "@charset 'utf-8';",
    "calc(1px + 2px)",
    "rgba(0,0,0,.5)",
    "@supports (x:y){",
]


def test_the_css_reading_never_counts_fewer_declarations_or_rules_than_cssutils_parses(
    monkeypatch,
):
    cssutils.log.setLevel(logging.CRITICAL)
    blocks: list[int] = []
    counted = inline_cost.declarations_work
    monkeypatch.setattr(
        inline_cost,
        "declarations_work",
        lambda declarations: blocks.append(len(declarations)) or counted(declarations),
    )
    rng = random.Random(7)
    for _ in range(3000):
        css = "".join(rng.choice(_CSS_PIECES) for _ in range(rng.randint(1, 40)))
        blocks.clear()
        try:
            sheet = inline_cost._read_css(css, inline_cost._Meter(10**12))
            parsed = cssutils.CSSParser(fetcher=_no_fetch, validate=False).parseString(css)
        except TooCostly:
            continue
        except Exception:
            continue  # cssutils fails on some junk itself: premailer's failure is caught
        real = []
        for rule in parsed.cssRules:
            for inner in rule.cssRules if rule.type == rule.MEDIA_RULE else [rule]:
                if getattr(inner, "style", None) is not None:
                    real.append(len(inner.style.getProperties(all=True)))
        assert sum(d * d for d in real) <= sum(d * d for d in blocks), css
        assert len(parsed.cssRules) <= sheet.rules, css


# The setting ------------------------------------------------------------------------------------


def test_both_engines_are_offered():
    assert set(ENGINES) == {"premailer", "css-inline"}


def test_an_unknown_inliner_stops_the_start():
    result = load_settings(CSS_INLINER="inliner")

    assert result.returncode != 0
    assert "CSS_INLINER must be premailer or css-inline, got 'inliner'" in result.stderr
