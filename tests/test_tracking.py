"""Tracking: tokens, the open pixel and click endpoints, machine opens, and the policy switches."""

import json
import re
import struct
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import signing
from django.test import Client

from sends import tracking
from sends.models import Event, Policy, Send

SITE = "https://mail.fluxomail.test"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HTML = (
    '<html><body><p>Hi</p><a href="https://shop.example/p?a=1&amp;b=2">Shop</a>'
    '<a href="https://evil.example/x" data-fluxomail-track="off">Off</a></body></html>'
)


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE
    settings.TRACKING_MACHINE_OPEN_SECONDS = 2


@pytest.fixture
def policy(acme) -> Policy:
    Policy.objects.ensure_defaults(acme)
    return Policy.objects.get(organization=acme, key="transactional")


def make_send(organization, **kwargs) -> Send:
    return Send.objects.create(
        organization=organization,
        endpoint="send",
        to="reader@example.com",
        subject="Hello",
        **kwargs,
    )


@pytest.fixture
def send(acme, policy) -> Send:
    with time_machine.travel(START, tick=False):
        send = make_send(acme)
        Event.objects.create(send=send, type=Event.Type.SENT, occurred_at=START)
    return send


def path_of(url: str) -> str:
    assert url.startswith(SITE)
    return url[len(SITE) :]


def click_paths(html: str) -> list[str]:
    return [path_of(url) for url in re.findall(re.escape(SITE) + r"/t/c/[^\"' >]+", html)]


def pixel_path(html: str) -> str:
    return path_of(re.search(re.escape(SITE) + r"/t/o/[^\"]+\.gif", html).group())


def events(send: Send, kind: str) -> list[Event]:
    return list(Event.objects.filter(send=send, type=kind).order_by("id"))


# The pixel -----------------------------------------------------------------------------------


def parse_gif(body: bytes) -> dict:
    """Walks a GIF's blocks (header, screen, colour table, extensions, image, trailer)."""
    assert body[:6] == b"GIF89a"
    width, height, flags, _, _ = struct.unpack("<HHBBB", body[6:13])
    i = 13
    if flags & 0x80:
        i += 3 * (2 ** ((flags & 0x07) + 1))
    transparent = False
    images = []
    while True:
        block = body[i]
        if block == 0x3B:  # trailer
            assert i == len(body) - 1
            return {"size": (width, height), "transparent": transparent, "images": images}
        if block == 0x21:  # extension
            label = body[i + 1]
            i += 2
            if label == 0xF9:
                transparent = bool(body[i + 1] & 0x01)
            while body[i]:
                i += body[i] + 1
            i += 1
        elif block == 0x2C:  # image descriptor, then LZW data sub-blocks
            left, top, w, h, image_flags = struct.unpack("<HHHHB", body[i + 1 : i + 10])
            images.append((left, top, w, h))
            i += 10 + 1  # descriptor and LZW minimum code size
            while body[i]:
                i += body[i] + 1
            i += 1
        else:
            raise AssertionError(f"unexpected block {block:#x} at {i}")


def test_pixel_is_a_transparent_one_by_one_gif(send, policy):
    rendered = tracking.inject(HTML, send=send, policy=policy)
    response = Client().get(pixel_path(rendered))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response["Cache-Control"] == "no-store, max-age=0"
    assert parse_gif(response.content) == {
        "size": (1, 1),
        "transparent": True,
        "images": [(0, 0, 1, 1)],
    }


def test_every_pixel_fetch_records_one_open(send, policy):
    path = pixel_path(tracking.inject(HTML, send=send, policy=policy))
    client = Client()
    with time_machine.travel(START + timedelta(hours=1), tick=False):
        client.get(path, HTTP_USER_AGENT="Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15")
        client.get(path, HTTP_USER_AGENT="Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15")

    opens = events(send, Event.Type.OPENED)
    assert [(e.occurred_at, e.data) for e in opens] == [
        (START + timedelta(hours=1), {"userAgentClass": "browser", "machine": False}),
        (START + timedelta(hours=1), {"userAgentClass": "browser", "machine": False}),
    ]


def test_opens_and_clicks_past_the_per_minute_cap_answer_but_are_not_recorded(
    send, policy, settings
):
    settings.TRACKING_MAX_EVENTS_PER_MINUTE = 3
    rendered = tracking.inject(HTML, send=send, policy=policy)
    (click_path,) = click_paths(rendered)
    client = Client()
    with time_machine.travel(START + timedelta(hours=1), tick=False) as traveller:
        pixels = [client.get(pixel_path(rendered)) for _ in range(5)]
        clicks = [client.get(click_path) for _ in range(5)]
        assert [r.status_code for r in pixels] == [200] * 5
        assert [r.status_code for r in clicks] == [302] * 5
        assert len(events(send, Event.Type.OPENED)) == 3
        assert len(events(send, Event.Type.CLICKED)) == 3
        traveller.shift(timedelta(minutes=1))
        client.get(pixel_path(rendered))
        client.get(click_path)
    assert len(events(send, Event.Type.OPENED)) == 4
    assert len(events(send, Event.Type.CLICKED)) == 4


def test_an_open_right_after_sending_is_flagged_as_machine(send, policy):
    path = pixel_path(tracking.inject(HTML, send=send, policy=policy))
    with time_machine.travel(START + timedelta(seconds=1), tick=False):
        Client().get(path, HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 10.0) Chrome/120")

    assert [e.data for e in events(send, Event.Type.OPENED)] == [
        {"userAgentClass": "browser", "machine": True}
    ]


@pytest.mark.parametrize(
    ("user_agent", "agent_class"),
    [
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com "
            "GoogleImageProxy)",
            "google_image_proxy",
        ),
        (
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            "yahoo_mail_proxy",
        ),
        ("Mozilla/5.0", "apple_privacy_proxy"),
    ],
)
def test_an_open_through_a_mail_privacy_proxy_is_flagged_as_machine(
    send, policy, user_agent, agent_class
):
    path = pixel_path(tracking.inject(HTML, send=send, policy=policy))
    with time_machine.travel(START + timedelta(days=1), tick=False):
        Client().get(path, HTTP_USER_AGENT=user_agent)

    assert [e.data for e in events(send, Event.Type.OPENED)] == [
        {"userAgentClass": agent_class, "machine": True}
    ]


def test_a_head_request_for_the_pixel_records_nothing(send, policy):
    path = pixel_path(tracking.inject(HTML, send=send, policy=policy))
    response = Client().head(path)

    assert response.status_code == 200
    assert events(send, Event.Type.OPENED) == []


@pytest.mark.parametrize(
    "token",
    [
        "sends_nope:abc",
        "garbage",
        signing.Signer(salt="fluxomail.open").sign("sends_01zzzzzzzzzzzzzzzzzzzzzzzz"),
        signing.Signer(salt="other").sign("sends_01zzzzzzzzzzzzzzzzzzzzzzzz"),
    ],
)
def test_a_bad_or_unknown_pixel_token_is_a_404_without_an_event(send, token):
    response = Client().get(f"/t/o/{token}.gif")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert Event.objects.filter(type=Event.Type.OPENED).count() == 0


# Clicks --------------------------------------------------------------------------------------


def test_a_click_redirects_to_the_url_and_records_it_without_the_ip(send, policy):
    (path,) = click_paths(tracking.inject(HTML, send=send, policy=policy))
    with time_machine.travel(START + timedelta(minutes=5), tick=False):
        response = Client().get(
            path, HTTP_USER_AGENT="Mozilla/5.0 (iPhone) Mobile/15E148", REMOTE_ADDR="203.0.113.9"
        )

    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/p?a=1&b=2"
    assert response["Cache-Control"] == "no-store, max-age=0"
    assert response.content == b""
    (event,) = events(send, Event.Type.CLICKED)
    assert event.occurred_at == START + timedelta(minutes=5)
    assert event.data == {
        "url": "https://shop.example/p?a=1&b=2",
        "position": 0,
        "userAgentClass": "browser",
        "machine": False,
    }
    assert "203.0.113.9" not in json.dumps(event.data)


def test_a_head_request_on_a_click_url_redirects_without_recording(send, policy):
    (path,) = click_paths(tracking.inject(HTML, send=send, policy=policy))
    response = Client().head(path)

    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/p?a=1&b=2"
    assert events(send, Event.Type.CLICKED) == []


def test_a_post_to_a_click_url_is_not_allowed(send, policy):
    (path,) = click_paths(tracking.inject(HTML, send=send, policy=policy))
    # A browser-like client: without the exemption Django would answer a CSRF 403 page.
    response = Client(enforce_csrf_checks=True).post(path)

    assert response.status_code == 405
    assert events(send, Event.Type.CLICKED) == []


def _tampered(token: str) -> list[str]:
    payload, signature = token.rsplit(":", 1)
    flipped = "A" if payload[5] != "A" else "B"
    return [
        payload[:5] + flipped + payload[6:] + ":" + signature,  # one payload character changed
        payload + ":" + signature[:-1] + ("A" if signature[-1] != "A" else "B"),
        token[:-5],  # truncated signature
        token[: len(token) // 2],  # truncated in the payload
        payload,  # no signature at all
        payload + ":",
    ]


def test_tampered_and_truncated_click_tokens_are_404_without_redirect_or_event(send, policy):
    (path,) = click_paths(tracking.inject(HTML, send=send, policy=policy))
    token = path.removeprefix("/t/c/")
    client = Client()

    for bad in _tampered(token):
        response = client.get(f"/t/c/{bad}")
        assert response.status_code == 404, bad
        assert "Location" not in response
        assert response.json()["code"] == "not_found"
    assert Event.objects.filter(type=Event.Type.CLICKED).count() == 0


def test_a_token_mixing_two_sends_is_404(acme, send, policy):
    other = make_send(acme)
    (mine,) = click_paths(tracking.inject(HTML, send=send, policy=policy))
    (theirs,) = click_paths(tracking.inject(HTML, send=other, policy=policy))
    my_payload = mine.removeprefix("/t/c/").rsplit(":", 1)[0]
    their_signature = theirs.rsplit(":", 1)[1]

    response = Client().get(f"/t/c/{my_payload}:{their_signature}")

    assert response.status_code == 404
    assert Event.objects.filter(type=Event.Type.CLICKED).count() == 0


def test_a_valid_token_of_a_send_that_does_not_exist_is_404(db):
    token = tracking.click_token("sends_01zzzzzzzzzzzzzzzzzzzzzzzz", 0, "https://e.example/")
    response = Client().get(f"/t/c/{token}")

    assert response.status_code == 404
    assert "Location" not in response


def test_an_open_token_is_not_a_click_token_and_back(send, policy):
    rendered = tracking.inject(HTML, send=send, policy=policy)
    open_token = pixel_path(rendered).removeprefix("/t/o/").removesuffix(".gif")
    (click,) = click_paths(rendered)
    client = Client()

    assert client.get(f"/t/c/{open_token}").status_code == 404
    assert client.get(f"/t/o/{click.removeprefix('/t/c/')}.gif").status_code == 404
    assert Event.objects.filter(type__in=[Event.Type.OPENED, Event.Type.CLICKED]).count() == 0


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "//evil.example/", "data:text/html,hi", "ftp://e.example/"]
)
def test_even_a_validly_signed_token_never_redirects_off_http(send, url):
    token = tracking.click_token(send.public_id, 0, url)
    response = Client().get(f"/t/c/{token}")

    assert response.status_code == 404
    assert "Location" not in response


def test_a_token_signed_with_another_salt_cannot_redirect(send):
    token = signing.Signer(salt="something.else").sign_object(
        [send.public_id, 0, "https://evil.example/"], compress=True
    )
    response = Client().get(f"/t/c/{token}")

    assert response.status_code == 404
    assert "Location" not in response


def test_click_tokens_redirect_only_to_urls_of_their_mail(send, policy):
    html = "".join(f'<a href="https://e.example/{n}?x={n}&amp;y=1">{n}</a>' for n in range(5))
    rendered = tracking.inject(html, send=send, policy=policy)
    client = Client()

    locations = {client.get(path)["Location"] for path in click_paths(rendered)}

    assert locations == {f"https://e.example/{n}?x={n}&y=1" for n in range(5)}


@pytest.mark.parametrize(
    ("url", "location", "stored"),
    [
        (
            "https://e.example/a\x0cb\x0b\x00c\x7f?q=\t\x1f",
            "https://e.example/a%0Cb%0B%00c%7F?q=%09%1F",
            "https://e.example/a%0Cb%0B%00c%7F?q=%09%1F",
        ),
        (
            "https://ü.example/a\x0cb?q=\x1fü",
            "https://xn--tda.example/a%0Cb?q=%1F%C3%BC",
            "https://ü.example/a%0Cb?q=%1Fü",
        ),
    ],
)
def test_a_token_signed_over_control_characters_redirects_with_them_percent_encoded(
    send, url, location, stored
):
    # Links are signed with their controls encoded; a token signed before that still works.
    token = tracking.click_token(send.public_id, 0, url)

    response = Client().get(f"/t/c/{token}")

    assert response.status_code == 302
    assert response["Location"] == location
    (event,) = events(send, Event.Type.CLICKED)
    # Stored as it was followed (PostgreSQL's jsonb refuses a NUL).
    assert event.data["url"] == stored


# Rendering switches --------------------------------------------------------------------------


def test_tracking_off_leaves_no_pixel_and_no_rewritten_link(send, policy):
    policy.track_opens = policy.track_clicks = False
    policy.save()
    html = '<html><body><a href="https://shop.example/p?a=1&amp;b=2">Shop</a></body></html>'

    rendered = tracking.inject(html, send=send, policy=policy)

    assert rendered == html
    assert "/t/o/" not in rendered and "/t/c/" not in rendered


def test_tracking_off_still_removes_the_opt_out_marker(send, policy):
    policy.track_opens = policy.track_clicks = False
    rendered = tracking.inject(HTML, send=send, policy=policy)

    assert rendered == HTML.replace(' data-fluxomail-track="off"', "")


def test_opens_only_adds_the_pixel_and_keeps_links(send, policy):
    policy.track_clicks = False
    rendered = tracking.inject(HTML, send=send, policy=policy)

    assert click_paths(rendered) == []
    assert 'href="https://shop.example/p?a=1&amp;b=2"' in rendered
    assert pixel_path(rendered).startswith("/t/o/")


def test_clicks_only_rewrites_links_without_a_pixel(send, policy):
    policy.track_opens = False
    rendered = tracking.inject(HTML, send=send, policy=policy)

    assert len(click_paths(rendered)) == 1
    assert "/t/o/" not in rendered


def test_the_pixel_has_an_empty_alt_and_no_size(send, policy):
    rendered = tracking.inject("<p>x</p>", send=send, policy=policy)

    assert rendered == (
        f'<p>x</p><img src="{SITE}{pixel_path(rendered)}" width="1" height="1" alt="" '
        'border="0" style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;'
        'overflow:hidden;" />'
    )


def test_links_the_two_parsers_read_differently_are_left_alone(send, policy, caplog):
    # libxml2 drops content after </html>; a browser shows it. Unsure, nothing is rewritten.
    html = '<html><body><a href="https://e.example/a">a</a></body></html><a href="https://e.example/b">b</a>'

    rendered = tracking.inject(html, send=send, policy=policy)

    assert click_paths(rendered) == []
    assert pixel_path(rendered)
    assert "links could not be mapped" in caplog.text


def test_empty_html_is_returned_as_is(send, policy):
    assert tracking.inject("", send=send, policy=policy) == ""


# Pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a&amp;b", "a&b"),
        ("?x=1&region=eu", "?x=1&region=eu"),
        ("?x=1&copy=2", "?x=1&copy=2"),
        ("&copy 2026", "\u00a9 2026"),
        ("&notit;", "&notit;"),
        ("&#38;&#x26;&#X26", "&&&"),
        ("&#;&#x;&", "&#;&#x;&"),
        ("&unknown;", "&unknown;"),
        ("caf&eacute;", "café"),
        ("&#x1f;&#1;&#127;&#12;", "\x1f\x01\x7f\x0c"),
        ("&#0;&#128;&#xD800;", "\ufffd\u20ac\ufffd"),
    ],
)
def test_attribute_values_decode_as_a_browser_decodes_them(raw, decoded):
    assert tracking.decode_attribute(raw) == decoded


@pytest.mark.parametrize(
    ("user_agent", "agent_class"),
    [
        ("", "unknown"),
        ("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "browser"),
        ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928)", "browser"),
        ("Googlebot/2.1", "bot"),
        ("curl/8.5.0", "bot"),
        ("SomethingElse/1.0", "unknown"),
    ],
)
def test_user_agents_are_reduced_to_a_class(user_agent, agent_class):
    from sends.tracking_views import user_agent_class

    assert user_agent_class(user_agent) == agent_class


def test_a_scan_for_some_tags_finds_what_the_full_scan_finds_of_them():
    # scan_tags(html, names) skips the other tokens inside one pattern: it must agree with the
    # tokenizer token by token, on markup built to trip it (raw text, comments, tags inside
    # attribute values, unterminated tags, names that start like a wanted one).
    import random

    pieces = [
        "<a href=x>", "</a>", "<A HREF='y'>", "<body>", "</BODY>", "<html>", "</html >",
        "<abbr>", "<a=b>", "<a/>", "<a", '<a href="', "<!--", "-->", "<!-- <a href=q> -->",
        "<script>", "</script>", "<script><a href=1></script>", "<style>", "</style>",
        "<title>", "</title", "<textarea>", "<?pi <a>?>", "<!doctype html>", "</>", "</ a>",
        "< a>", "<p class='<a href=z>'>", "text", "<", ">", "'", '"', "=", " ", "\n",
        '<img alt="<a href=u>">', "<a\thref=t>", "</body", "<bodyx>", "<htmlx>", "<!--->",
        "<!-->", "<xmp>", "</xmp>", "<!x>", "<1a>", "<a\f>", "<a/href=k>", "é<a>",
    ]  # fmt: skip
    names = frozenset({"a", "body", "html"})
    rng = random.Random(11)
    for _ in range(20_000):
        html = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        wanted = [tag for tag in tracking.scan_tags(html) if tag.name in names]
        assert tracking.scan_tags(html, names) == wanted, html


def test_tracking_urls_follow_the_site_url_and_script_prefix(settings):
    from django.urls import set_script_prefix

    settings.SITE_URL = "https://a.example"
    assert tracking.open_url("sends_1") == (
        f"https://a.example/t/o/{tracking.open_token('sends_1')}.gif"
    )
    settings.SITE_URL = "https://b.example"
    set_script_prefix("/mail/")
    try:
        assert tracking.open_url("sends_1") == (
            f"https://b.example/mail/t/o/{tracking.open_token('sends_1')}.gif"
        )
        click = tracking.click_url("sends_1", 0, "https://example.com/")
        assert click.startswith("https://b.example/mail/t/c/")
        token = click.removeprefix("https://b.example/mail/t/c/")
        assert tracking.read_click_token(token) == ("sends_1", 0, "https://example.com/")
    finally:
        set_script_prefix("/")


def _walked_text(root) -> str:
    """The text _walked_links reads: element texts and tails in document order, comments'
    and processing instructions' own text left out, the root's tail left out."""
    pieces = []
    stack = [(root, iter(root))]
    if root.text:
        pieces.append(root.text)
    while stack:
        element = next(stack[-1][1], None)
        if element is None:
            done, _ = stack.pop()
            if stack and done.tail:
                pieces.append(done.tail)
            continue
        if isinstance(element.tag, str) and element.text:
            pieces.append(element.text)
        stack.append((element, iter(element)))
    return "".join(pieces)


def test_link_texts_read_in_c_mark_the_links_the_walk_marks():
    # _lxml_links takes the document's text, and each link's, from libxml2 in C; the walk over
    # the tree in Python (_walked_links, kept for nested links) is the reference. Random markup
    # built to tell them apart: markers split by comments and tags, hidden in comments,
    # processing instructions and attributes, in raw-text elements, after </html>, nested and
    # unclosed links, entities, and case mappings that change a text's length (İ) or depend on
    # context (Σ).
    import random

    from lxml import etree
    from lxml import html as lxml_html

    pieces = [
        '<a href="https://e.example/1">', "<a href=x>", "<a>", "<A HREF=y>", "</a>", "<a name=n>",
        "<div>", "</div>", "<p>", "</p>", "<span>", "</span>", "<table><tr><td>", "</td></tr>",
        "<b>", "<br>", "<img src=i>", "<!-- unsubscribe -->", "<!--", "-->", "<?pi unsub ?>",
        "<![CDATA[opt-out]]>", "<script>unsub</script>", "<style>p{}/*unsub*/</style>",
        "<title>Preferences</title>", "<textarea>unsub</textarea>", "<!doctype html>",
        "</body>", "</html>", "<body>", "<head>", "unsub", "UNSUBSCRIBE", "Unsub", "scribe",
        "opt", "-out", " out", "Opt Out", "Désinscri", "DÉSINSCRI", "d&eacute;sinscri",
        "&amp;", "&nbsp;", "&#x55;nsub", "İ", "ΣΑΣ", "σ", "x", " ", "\n", "\r\n", "\t",
        "manage", " subscription", "e.g. preference-center", '<p title="unsub">',
    ]  # fmt: skip
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=False)
    rng = random.Random(15)
    marked = nested = 0  # documents with a marked link, with a link in a link
    for _ in range(4000):
        html = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        try:
            root = lxml_html.document_fromstring(html.encode(), parser=parser)
        except etree.ParserError:  # nothing but a comment, a doctype, ...
            assert tracking._lxml_links(html) is None
            continue
        walked = tracking._walked_links(root)
        links = [a for a in root.iter("a") if a.get("href") is not None]
        each = [(a.sourceline, tracking._marked(tracking._text_of(a))) for a in links]

        assert tracking._text_of(root) == _walked_text(root), html
        assert each == walked, html
        assert tracking._lxml_links(html) == walked, html
        inside = any(a.find(".//a") is not None for a in links)
        marked += any(mark for _, mark in walked) and not inside
        nested += inside
    assert marked > 500 and nested > 100  # each way was taken
