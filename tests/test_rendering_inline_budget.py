"""CSS inlining stays bounded: above SEND_MAX_INLINE_WORK the HTML goes out as written."""

import logging

import pytest
from django.core import mail

from sends.models import Message, Policy
from sends.rendering import inline_work

SEND = "/api/v1/emails/send"

pytestmark = pytest.mark.django_db

STYLED = "<html><head><style>p { color: #ff0000 }</style></head><body><p>Hi</p></body></html>"


def hostile_html(selectors: int = 2000, elements: int = 2000) -> str:
    """Many selectors times many elements: premailer would match every pair."""
    css = "\n".join(f"div p.c{i} {{ color: red; --v{i}: 1 }}" for i in range(selectors))
    body = "".join(f'<p class="c{i % selectors}">x</p>' for i in range(elements))
    return f"<html><head><style>{css}</style></head><body><div>{body}</div></body></html>"


@pytest.fixture(autouse=True)
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


def test_a_normal_styled_mail_is_inlined(api, send_key, seed_body):
    seed_body["htmlContent"] = STYLED

    html = html_sent(api, send_key, seed_body)

    assert '<p style="color:#f00">Hi</p>' in html
    assert "<style" not in html


def test_a_hostile_stylesheet_is_sent_as_written_with_a_warning(api, send_key, seed_body, caplog):
    seed_body["htmlContent"] = hostile_html()
    caplog.set_level(logging.WARNING, logger="fluxomail.rendering")

    html = html_sent(api, send_key, seed_body)

    assert html == seed_body["htmlContent"]
    assert "<style>div p.c0 { color: red; --v0: 1 }" in html
    assert "style=" not in html
    [record] = caplog.records
    assert record.getMessage() == (
        f"CSS inlining skipped: estimated work {inline_work(seed_body['htmlContent'])} "
        "over SEND_MAX_INLINE_WORK 100000"
    )


def test_the_budget_is_the_setting(api, send_key, seed_body, settings):
    settings.SEND_MAX_INLINE_WORK = inline_work(STYLED) - 1
    seed_body["htmlContent"] = STYLED

    html = html_sent(api, send_key, seed_body)

    assert html == STYLED


def test_work_counts_selector_parts_elements_and_nesting():
    html = (
        "<style>/* a, b { } */ p, div > a.x { color: red } @media print { p { color: blue } }"
        "</style><div><p>x<br><img src=a></p><a class=x>y</a></div>"
    )

    # Selectors (comments ignored): "p", "div > a.x", "@media print" (a prelude, counted as a
    # selector), "p": 4 selectors of 1 + 2 + 2 + 1 = 6 parts. Opening tags: style, div, p, br,
    # img, a = 6; deepest nesting 2 (br and img are void and do not nest).
    assert inline_work(html) == (6 + 10) * (6 + 4) + 6 * 2**2 // 16


def test_unclosed_markup_is_estimated_in_one_pass():
    html = "<style>" + "a{" * 50_000 + "</style>" + "<b" * 50_000

    assert inline_work(html) > 100_000
