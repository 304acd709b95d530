"""htmlContent is refused (400, nothing stored or sent) past the bounds of sends.html_limits, the
shapes that made reading it for tracking take seconds (issue 11); everything within them is sent
and tracked, and tracking's scanner reads tags and attributes as the HTML tokenizer does."""

import re

import pytest
from django.core import mail, signing

from bench import hostile
from sends import tracking
from sends.html_limits import (
    MAX_ATTRIBUTES,
    MAX_ATTRIBUTES_PER_TAG,
    MAX_LINKS,
    MAX_TAGS,
    html_problem,
)
from sends.models import IdempotencyRecord, Message, Send
from tests.test_rendering_inline_budget import python_calls

SEND = "/api/v1/emails/send"
SITE = "https://mail.fluxomail.test"
TOO_MANY_TAGS = f"At most {MAX_TAGS} tags (start and end tags, comments and doctypes)."
TOO_MANY_ON_ONE_TAG = f"At most {MAX_ATTRIBUTES_PER_TAG} attributes on one tag."
TOO_MANY_ATTRIBUTES = f"At most {MAX_ATTRIBUTES} attributes in all."
TOO_MANY_LINKS = f"At most {MAX_LINKS} links (<a> tags)."

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE


def attributes(count: int) -> str:
    return " ".join(f"a{i}=1" for i in range(count))


def send(api, key, body, html: str):
    body["htmlContent"] = html
    return api.post(SEND, body, format="json", HTTP_IDEMPOTENCY_KEY="limits", **key.bearer)


def assert_refused(response, message: str) -> None:
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["details"] == {"htmlContent": [message]}
    assert body["message"] == f"htmlContent: {message}"
    assert Send.objects.count() == 0
    assert Message.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    assert mail.outbox == []


def sent_html(response) -> str:
    assert response.status_code == 200, response.content[:300]
    [message] = mail.outbox
    [(html, _)] = message.alternatives
    return html


def click_targets(html: str) -> list[str]:
    tokens = re.findall(re.escape(SITE) + r"/t/c/([^\"' >]+)", html)
    return [tracking.read_click_token(token)[2] for token in tokens]


# The shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("attributes on a link", TOO_MANY_ON_ONE_TAG),
        ("attributes on one tag", TOO_MANY_ON_ONE_TAG),
        ("elements", TOO_MANY_TAGS),
    ],
)
def test_the_shapes_that_held_a_worker_for_seconds_are_refused(
    api, send_key, seed_body, shape, message
):
    assert_refused(send(api, send_key, seed_body, hostile.HTML[shape]), message)


# Each bound: at it, sent; one past it, refused -------------------------------------------------


def test_tags_at_the_bound_are_sent_and_one_more_is_refused(api, send_key, seed_body):
    html = '<a href="https://shop.example/">x</a>' + "<p>x</p>" * (MAX_TAGS // 2 - 1)
    assert html.count("<") == MAX_TAGS

    assert_refused(send(api, send_key, dict(seed_body), html + "<br>"), TOO_MANY_TAGS)
    sent = sent_html(send(api, send_key, seed_body, html))

    assert click_targets(sent) == ["https://shop.example/"]


def test_comments_and_doctypes_count_as_tags_and_so_does_markup_inside_them(
    api, send_key, seed_body
):
    # Counted as the characters that may open a tag: more than a browser reads, never fewer.
    html = "<!doctype html><!--" + "<p>" * (MAX_TAGS - 1) + "-->"

    assert_refused(send(api, send_key, seed_body, html), TOO_MANY_TAGS)


def test_attributes_on_one_tag_at_the_bound_are_sent_and_one_more_is_refused(
    api, send_key, seed_body
):
    at_bound = f'<a href="https://shop.example/" {attributes(MAX_ATTRIBUTES_PER_TAG - 1)}>x</a>'
    past = f'<a href="https://shop.example/" {attributes(MAX_ATTRIBUTES_PER_TAG)}>x</a>'

    assert_refused(send(api, send_key, dict(seed_body), past), TOO_MANY_ON_ONE_TAG)
    sent = sent_html(send(api, send_key, seed_body, at_bound))

    assert click_targets(sent) == ["https://shop.example/"]


def test_attributes_in_all_at_the_bound_are_sent_and_one_more_is_refused(api, send_key, seed_body):
    tags = MAX_ATTRIBUTES // MAX_ATTRIBUTES_PER_TAG
    html = f"<p {attributes(MAX_ATTRIBUTES_PER_TAG)}>x</p>" * tags
    assert tags * MAX_ATTRIBUTES_PER_TAG == MAX_ATTRIBUTES

    assert_refused(send(api, send_key, dict(seed_body), html + "<p b>"), TOO_MANY_ATTRIBUTES)
    assert sent_html(send(api, send_key, seed_body, html)).startswith(html)


def test_links_at_the_bound_are_all_tracked_and_one_more_is_refused(api, send_key, seed_body):
    html = "".join(f'<a href="https://shop.example/{i}">{i}</a>' for i in range(MAX_LINKS))

    assert_refused(send(api, send_key, dict(seed_body), html + "<A href=x>"), TOO_MANY_LINKS)
    sent = sent_html(send(api, send_key, seed_body, html))

    assert click_targets(sent) == [f"https://shop.example/{i}" for i in range(MAX_LINKS)]


def test_a_refused_document_leaves_its_idempotency_key_free(api, send_key, seed_body):
    assert_refused(send(api, send_key, dict(seed_body), "<p>" * (MAX_TAGS + 1)), TOO_MANY_TAGS)

    assert sent_html(send(api, send_key, seed_body, "<p>fixed</p>")).startswith("<p>fixed</p>")
    assert Send.objects.count() == 1


def test_every_bench_shape_within_the_bounds_is_one_the_bounds_accept():
    # bench/hostile.py's shapes "at the bound" are the worst the bounds let through.
    for shape, html in hostile.HTML.items():
        if "at the bound" in shape:
            assert html_problem(html) is None, shape


# Tracking's scanner ----------------------------------------------------------------------------


def test_the_scanner_reads_tags_as_the_tokenizer_does():
    html = (
        '<!doctype html><p title="a>b" class=x>t</p><!-- <a href="in-comment"> -->'
        "<style><a href=in-style></style><A HREF='https://shop.example/'>x</A >"
    )

    tags = tracking.scan_tags(html)

    assert [(tag.name, tag.closing) for tag in tags] == [
        ("p", False),
        ("p", True),
        ("style", False),
        ("style", True),
        ("a", False),
        ("a", True),
    ]
    assert html[tags[0].start : tags[0].end] == '<p title="a>b" class=x>'


def test_a_tag_left_open_at_the_end_drops_the_rest():
    html = '<p>x</p><a href="https://shop.example/>never closed</a><p>'

    assert [tag.name for tag in tracking.scan_tags(html)] == ["p", "p"]


def test_the_first_of_duplicate_attributes_is_read_and_case_does_not_matter():
    html = "<a x=1 HREF = 'first' href=\"second\" Data-Fluxomail-Track>x</a>"
    [tag, _] = tracking.scan_tags(html)

    href = tracking.attribute(html, tag, "href")
    opt_out = tracking.attribute(html, tag, tracking.OPT_OUT_ATTRIBUTE)

    assert html[href.value_start : href.value_end] == "first"
    assert html[href.start : href.end] == " HREF = 'first'"
    assert html[opt_out.start : opt_out.end] == " Data-Fluxomail-Track"
    assert opt_out.value_start == -1
    assert tracking.attribute(html, tag, "title") is None
    assert tracking.count_attributes(html[tag.attributes_start : tag.attributes_end]) == 4


def test_attribute_names_compare_ascii_case_insensitively():
    html = '<a data-fluxomaıl-track HREF="https://shop.example/">x</a>'  # a dotless ı
    [tag, _] = tracking.scan_tags(html)

    assert tracking.attribute(html, tag, tracking.OPT_OUT_ATTRIBUTE) is None
    assert tracking.attribute(html, tag, "href").value_start == html.index("https")


def test_an_attribute_named_like_the_start_of_another_is_not_it():
    html = '<a hrefx="no" =href="no" href-="no" href="yes">x</a>'
    [tag, _] = tracking.scan_tags(html)

    href = tracking.attribute(html, tag, "href")

    assert html[href.value_start : href.value_end] == "yes"


def test_click_urls_sign_as_click_url_does(settings):
    make = tracking.click_urls("snd_1")

    url = make(3, "https://shop.example/a?b=1")

    assert url == tracking.click_url("snd_1", 3, "https://shop.example/a?b=1")
    token = url.removeprefix(SITE + "/t/c/")
    assert signing.Signer(salt=tracking.CLICK_SALT).unsign_object(token) == [
        "snd_1",
        3,
        "https://shop.example/a?b=1",
    ]


def test_a_link_around_an_unsubscribe_link_holds_its_text_and_neither_is_tracked(
    api, send_key, seed_body
):
    html = (
        '<a href="https://shop.example/outer"><div>Unsub<!-- split -->scribe '
        '<a href="https://shop.example/inner">here</a></div></a>'
        '<a href="https://shop.example/after">Shop</a>'
    )

    sent = sent_html(send(api, send_key, seed_body, html))

    # The outer link's text is "Unsubscribe here" (a comment splits no text); the inner one's
    # is "here"; text after a link is not the link's.
    assert click_targets(sent) == ["https://shop.example/inner", "https://shop.example/after"]


def test_links_nested_around_a_large_text_are_each_tracked(api, send_key, seed_body):
    # Reading each link's text on its own cost nesting × text (3 to 8 s for this one).
    html = "".join(f'<a href="https://shop.example/{i}"><div>' for i in range(100))
    html += "x" * 900_000

    sent = sent_html(send(api, send_key, seed_body, html))

    assert click_targets(sent) == [f"https://shop.example/{i}" for i in range(100)]


# Work that does not grow with what the patterns read ------------------------------------------


def test_reading_tags_costs_the_same_python_work_whatever_their_attributes_and_length():
    # Calls, unlike time, are deterministic; the patterns read attributes and characters in C.
    def calls(html: str) -> int:
        return python_calls(lambda: (html_problem(html), tracking.scan_tags(html)))

    # As long as the large one's tags (those are counted one by one), with one attribute each.
    long = "v" * 1000
    small = calls(f'<p a="{long}">x</p><a href="https://shop.example/" b="{long}">y</a>')
    large = calls(
        f"<p {attributes(MAX_ATTRIBUTES_PER_TAG)}>{'x' * 100_000}</p>"
        f'<a href="https://shop.example/" {attributes(MAX_ATTRIBUTES_PER_TAG - 1)}>y</a>'
    )

    assert large == small


def test_finding_a_links_href_costs_the_same_python_work_after_many_attributes():
    few = '<a b=1 href="https://shop.example/">x</a>'
    many = f'<a {attributes(MAX_ATTRIBUTES_PER_TAG - 1)} href="https://shop.example/">x</a>'

    def calls(html: str) -> int:
        [tag] = tracking.scan_tags(html, frozenset({"a"}))[:1]
        return python_calls(lambda: tracking.attribute(html, tag, "href"))

    assert calls(many) == calls(few)
