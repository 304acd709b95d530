"""Real-world HTML through rendering and the real click endpoint: every reader lands on exactly
the URL that was in the mail, and the rest of the HTML is byte for byte what was sent.

Each case names the raw `href` source text of every link that must be tracked (in document
order) with the Location the click must answer, and the raw href values that must stay as
written. The byte-identity check swaps each tracked raw value and each click URL for the same
marker, drops the pixel and the opt-out attributes, and compares the rest exactly.
"""

import re
from dataclasses import dataclass, field

import pytest
from django.test import Client

from sends.models import Event, Policy, Send
from sends.rendering import render_html

SITE = "https://mail.fluxomail.test"
CLICK = re.compile(re.escape(SITE) + r"/t/c/[A-Za-z0-9_:.\-]+")
PIXEL = re.compile(r'<img src="' + re.escape(SITE) + r'/t/o/[^"]+\.gif"[^>]*/>')
MARK = "\x00LINK\x00"


@dataclass
class Case:
    name: str
    html: str
    # (raw href source text, the Location the click must answer)
    tracked: list[tuple[str, str]]
    untouched: list[str] = field(default_factory=list)
    byte_identical: bool = True  # False when premailer rewrites the document (a <style> block)


def same(raw: str) -> tuple[str, str]:
    return raw, raw


CASES = [
    Case(
        "plain https link",
        '<html><body><p><a href="https://example.com/welcome">Hi</a></p></body></html>',
        [same("https://example.com/welcome")],
    ),
    Case(
        "raw ampersands in the query",
        '<body><a href="https://shop.example/p?id=7&utm_source=mail&utm_medium=email">'
        "Buy</a></body>",
        [same("https://shop.example/p?id=7&utm_source=mail&utm_medium=email")],
    ),
    Case(
        "escaped &amp; in the query",
        '<body><a href="https://shop.example/p?id=7&amp;utm_source=mail&amp;x=">Buy</a></body>',
        [
            (
                "https://shop.example/p?id=7&amp;utm_source=mail&amp;x=",
                "https://shop.example/p?id=7&utm_source=mail&x=",
            )
        ],
    ),
    Case(
        "legacy entity names in parameter names stay literal",
        '<body><a href="https://shop.example/?lang=en&region=eu&copy=2&not=1">Shop</a></body>',
        [same("https://shop.example/?lang=en&region=eu&copy=2&not=1")],
    ),
    Case(
        "numeric character references",
        '<body><a href="https://e.example/?a=1&#38;b=2&#x26;c=3">x</a></body>',
        [("https://e.example/?a=1&#38;b=2&#x26;c=3", "https://e.example/?a=1&b=2&c=3")],
    ),
    Case(
        "percent-encoded query",
        '<body><a href="https://e.example/search?q=caf%C3%A9%20cr%C3%A8me&sort=%2Bprice">'
        "s</a></body>",
        [same("https://e.example/search?q=caf%C3%A9%20cr%C3%A8me&sort=%2Bprice")],
    ),
    Case(
        "unicode query",
        '<body><a href="https://e.example/search?q=café&city=Zürich">s</a></body>',
        [
            (
                "https://e.example/search?q=café&city=Zürich",
                "https://e.example/search?q=caf%C3%A9&city=Z%C3%BCrich",
            )
        ],
    ),
    Case(
        "unicode host and path",
        '<body><a href="https://bücher.example/straße/天気?x=1">b</a></body>',
        [
            (
                "https://bücher.example/straße/天気?x=1",
                "https://xn--bcher-kva.example/stra%C3%9Fe/%E5%A4%A9%E6%B0%97?x=1",
            )
        ],
    ),
    Case(
        "hosts IDNA 2008 encodes differently from IDNA 2003, and one it refuses",
        '<body><a href="https://faß.de/a">a</a><a href="https://💩.la/b">b</a></body>',
        [
            ("https://faß.de/a", "https://xn--fa-hia.de/a"),
            # A browser percent-decodes the host before its own UTS #46 processing.
            ("https://💩.la/b", "https://%F0%9F%92%A9.la/b"),
        ],
    ),
    Case(
        "nested encoded redirect URL",
        '<body><a href="https://r.example/out?u=https%3A%2F%2Fshop.example%2Fp%3Fid%3D1%26'
        'ref%3Dmail&amp;sig=ab%2Fc%3D">go</a></body>',
        [
            (
                "https://r.example/out?u=https%3A%2F%2Fshop.example%2Fp%3Fid%3D1%26ref%3Dmail"
                "&amp;sig=ab%2Fc%3D",
                "https://r.example/out?u=https%3A%2F%2Fshop.example%2Fp%3Fid%3D1%26ref%3Dmail"
                "&sig=ab%2Fc%3D",
            )
        ],
    ),
    Case(
        "nested raw redirect URL",
        '<body><a href="https://r.example/?next=https://shop.example/cart?x=1&y=2#pay">go</a>'
        "</body>",
        [same("https://r.example/?next=https://shop.example/cart?x=1&y=2#pay")],
    ),
    Case(
        "fragment",
        '<body><a href="https://docs.example/guide#section-2">Guide</a></body>',
        [same("https://docs.example/guide#section-2")],
    ),
    Case(
        "query and fragment",
        '<body><a href="https://docs.example/p?a=1&amp;b=#top">Top</a></body>',
        [("https://docs.example/p?a=1&amp;b=#top", "https://docs.example/p?a=1&b=#top")],
    ),
    Case(
        "uppercase schemes and tags",
        '<BODY><A HREF="HTTPS://EXAMPLE.COM/Path?Q=1">one</A> '
        '<a href="Http://Example.com/two">two</a></BODY>',
        [same("HTTPS://EXAMPLE.COM/Path?Q=1"), same("Http://Example.com/two")],
    ),
    Case(
        "href with surrounding spaces and a wrapped newline",
        '<body><a href="  https://e.example/spaced  ">a</a>'
        '<a href="\n\thttps://e.example/long?\nx=1\n">b</a></body>',
        [
            ("  https://e.example/spaced  ", "https://e.example/spaced"),
            ("\n\thttps://e.example/long?\nx=1\n", "https://e.example/long?x=1"),
        ],
    ),
    Case(
        "control characters inside the URL are percent-encoded, as a browser does",
        '<body><a href="&#1;https://e.example/a&#12;b\x0bc?q=&#x1f;&#127;#f&#0;">x</a></body>',
        [
            (
                "&#1;https://e.example/a&#12;b\x0bc?q=&#x1f;&#127;#f&#0;",
                "https://e.example/a%0Cb%0Bc?q=%1F%7F#f%EF%BF%BD",
            )
        ],
    ),
    Case(
        "unquoted and single-quoted hrefs",
        "<body><a href=https://e.example/u?a=1&amp;b=2>u</a>"
        "<a class='btn' href='https://e.example/q?say=\"hi\"'>q</a></body>",
        [
            ("https://e.example/u?a=1&amp;b=2", "https://e.example/u?a=1&b=2"),
            same('https://e.example/q?say="hi"'),
        ],
    ),
    Case(
        "href on its own line among other attributes, CRLF line endings",
        '<html>\r\n<body>\r\n<a class="button"\r\n   style="color:#fff;background:#06c"\r\n'
        '   href="https://app.example/login?next=%2Fhome"\r\n   target="_blank">Log in</a>'
        "\r\n</body>\r\n</html>\r\n",
        [same("https://app.example/login?next=%2Fhome")],
    ),
    Case(
        "Outlook conditional comments stay as written",
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml">\n'
        "<head><!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:PixelsPerInch>96"
        "</o:PixelsPerInch></o:OfficeDocumentSettings></xml><![endif]--></head>\n<body>\n"
        '<!--[if mso]><v:roundrect href="https://app.example/vml" style="height:40px">'
        "<center>Open</center></v:roundrect><![endif]-->\n"
        '<!--[if !mso]><!--><a href="https://app.example/open?a=1&amp;b=2">Open</a>'
        "<!--<![endif]-->\n</body>\n</html>",
        [("https://app.example/open?a=1&amp;b=2", "https://app.example/open?a=1&b=2")],
        untouched=["https://app.example/vml"],
    ),
    Case(
        "a base tag: relative links are left alone",
        '<html><head><base href="https://base.example/app/"></head><body>'
        '<a href="settings?tab=1">relative</a> <a href="/root">root</a> '
        '<a href="https://other.example/abs">absolute</a></body></html>',
        [same("https://other.example/abs")],
        untouched=["settings?tab=1", "/root", "https://base.example/app/"],
    ),
    Case(
        "no body tag",
        '<p>Hello</p><p><a href="https://e.example/nobody?x=1&amp;y=2">x</a></p>',
        [("https://e.example/nobody?x=1&amp;y=2", "https://e.example/nobody?x=1&y=2")],
    ),
    Case(
        "an opted-out link stays as written without the marker",
        '<body><a href="https://e.example/keep?x=1" data-fluxomail-track="off">keep</a> '
        '<a data-fluxomail-track="off" href="https://e.example/keep2">keep2</a> '
        '<a href="https://e.example/track">track</a></body>',
        [same("https://e.example/track")],
        untouched=["https://e.example/keep?x=1", "https://e.example/keep2"],
    ),
    Case(
        "unsubscribe and preference links",
        '<body><a href="https://e.example/read">Read</a><p style="font-size:11px">'
        '<a href="https://e.example/u/unsubscribe?t=abc">Unsubscribe</a> | '
        '<a href="https://e.example/account/preferences">Email preferences</a> | '
        '<a href="https://e.example/l/xyz">Unsubscribe from these emails</a></p></body>',
        [same("https://e.example/read")],
        untouched=[
            "https://e.example/u/unsubscribe?t=abc",
            "https://e.example/account/preferences",
            "https://e.example/l/xyz",
        ],
    ),
    Case(
        "mailto, tel, fragment and javascript links",
        '<body><a href="mailto:help@e.example?subject=Hi&amp;body=x">Mail</a>'
        '<a href="tel:+15555550100">Call</a><a href="#top">Top</a>'
        '<a href="javascript:void(0)">js</a><a href="ftp://e.example/f">ftp</a>'
        '<a href="https://e.example/web">web</a></body>',
        [same("https://e.example/web")],
        untouched=[
            "mailto:help@e.example?subject=Hi&amp;body=x",
            "tel:+15555550100",
            "#top",
            "javascript:void(0)",
            "ftp://e.example/f",
        ],
    ),
    Case(
        "entities, comments and text outside links are kept",
        "<!DOCTYPE html>\n<html><body><!-- preheader -->\n<p>Caf&eacute; &amp; cr&egrave;me"
        "&nbsp;&copy; 2026 &#8203; 🎉 <b>bold</b></p>"
        '<a href="https://e.example/x">Tom &amp; Jerry &rarr;</a></body></html>',
        [same("https://e.example/x")],
    ),
    Case(
        "the same URL twice gets two positions",
        '<body><table><tr><td><a href="https://e.example/same"><img src="https://cdn.example/'
        'logo.png" alt="Logo"></a></td><td><a href="https://e.example/same">Same</a></td></tr>'
        "</table></body>",
        [same("https://e.example/same"), same("https://e.example/same")],
    ),
    Case(
        "percent signs that are not escapes, plus signs, semicolons, a port",
        '<body><a href="https://e.example:8443/sale?d=50%off&q=a+b;v=1&sig=abc%3D%3D">x</a></body>',
        [same("https://e.example:8443/sale?d=50%off&q=a+b;v=1&sig=abc%3D%3D")],
    ),
    Case(
        "links inside comments, titles and scripts are not links",
        '<html><head><title>Read <a href="https://no.example/title"></title>'
        "<script>var a = '<a href=\"https://no.example/script\">';</script></head><body>"
        '<!-- <a href="https://no.example/comment">x</a> -->'
        '<a href="https://e.example/real">real</a></body></html>',
        [same("https://e.example/real")],
        untouched=[
            "https://no.example/title",
            "https://no.example/script",
            "https://no.example/comment",
        ],
    ),
    Case(
        "an XML prolog and an XHTML namespace",
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><body>'
        '<a href="https://e.example/x?a=1&amp;b=2" />text</body></html>',
        [("https://e.example/x?a=1&amp;b=2", "https://e.example/x?a=1&b=2")],
    ),
    Case(
        "a style block is inlined first, then links are tracked",
        "<html><head><style>a { color: #ff0000; } .big { font-size: 20px }</style></head>"
        '<body><a class="big" href="https://e.example/styled?a=1&amp;b=%2F">Styled</a>'
        "</body></html>",
        [("https://e.example/styled?a=1&amp;b=%2F", "https://e.example/styled?a=1&b=%2F")],
        byte_identical=False,
    ),
    Case(
        "a link with an attribute value containing a tag-like string",
        '<body><a title="<a href=https://no.example/>" href="https://e.example/t">t</a></body>',
        [same("https://e.example/t")],
    ),
]


@pytest.fixture
def send(acme, settings):
    settings.SITE_URL = SITE
    Policy.objects.ensure_defaults(acme)
    return Send.objects.create(
        organization=acme, endpoint="send", to="reader@example.com", subject="Hello"
    )


def follow(client: Client, url: str):
    assert url.startswith(SITE + "/t/c/")
    return client.get(url[len(SITE) :])


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_tracked_link_lands_on_the_url_in_the_mail(case, send, db):
    policy = Policy.objects.get(organization=send.organization, key="transactional")
    rendered = render_html(case.html, send=send, policy=policy)

    click_urls = CLICK.findall(rendered)
    assert len(click_urls) == len(case.tracked)
    client = Client()
    positions = []
    for url, (_, expected) in zip(click_urls, case.tracked, strict=True):
        response = follow(client, url)
        assert response.status_code == 302
        assert response["Location"] == expected
        assert response["Cache-Control"] == "no-store, max-age=0"
        event = Event.objects.filter(send=send, type=Event.Type.CLICKED).order_by("-id").first()
        positions.append(event.data["position"])
    # A link's position counts every <a href> of the mail, tracked or not.
    assert positions == sorted(set(positions))
    assert Event.objects.filter(send=send, type=Event.Type.CLICKED).count() == len(case.tracked)

    for raw in case.untouched:
        assert f'href="{raw}"' in rendered
    assert "data-fluxomail-track" not in rendered
    assert len(PIXEL.findall(rendered)) == 1

    if case.byte_identical:
        expected_html = case.html
        for raw, _ in case.tracked:
            before, found, after = expected_html.partition(raw)
            assert found, raw
            expected_html = before + MARK + after
        expected_html = expected_html.replace(' data-fluxomail-track="off"', "")
        actual = CLICK.sub(MARK, PIXEL.sub("", rendered))
        assert actual == expected_html


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_pixel_sits_just_before_the_closing_body_tag(case, send, db):
    policy = Policy.objects.get(organization=send.organization, key="transactional")
    rendered = render_html(case.html, send=send, policy=policy)
    pixel = PIXEL.search(rendered)
    after = rendered[pixel.end() :]
    if "</body>" in case.html.lower():
        assert after.lower().startswith("</body>")
    else:
        assert after == ""


def test_the_suite_covers_at_least_25_real_world_cases():
    assert len(CASES) >= 25


# A real browser ------------------------------------------------------------------------------

BROWSER_LINKS = [
    "/landing?a=1&amp;b=2&region=eu",
    "/landing?q=café&city=Zürich#frag",
    "/out?u=https%3A%2F%2Fshop.example%2Fp%3Fid%3D1%26ref%3Dmail&amp;s=%2B",
    "/landing/straße?next=/a?b=1&c=2",
    "/landing/a&#12;b\x0bc?q=&#x1f;x&#127;",
]


class _Landing:
    """A plain HTTP server on 127.0.0.1 that records the request target of every GET.

    It also shows the mail (`/mail/<name>`) as a mail client does: a UTF-8 document.
    """

    def __init__(self):
        import http.server
        import threading

        targets = self.targets = []
        mails = self.mails = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/favicon.ico":
                    self.send_error(404)
                    return
                if self.path.startswith("/mail/"):
                    body = mails[self.path.removeprefix("/mail/")].encode()
                else:
                    targets.append(self.path)
                    body = b"<html><body>landed</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_chromium_clicking_a_tracked_link_lands_where_the_original_link_lands(
    live_server, settings, acme
):
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    settings.SITE_URL = live_server.url
    Policy.objects.ensure_defaults(acme)
    policy = Policy.objects.get(organization=acme, key="transactional")
    send = Send.objects.create(organization=acme, endpoint="send", to="r@example.com", subject="s")
    landing = _Landing()
    try:
        anchors = "".join(
            f'<p><a id="l{n}" href="{landing.url}{href}">link {n}</a></p>'
            for n, href in enumerate(BROWSER_LINKS)
        )
        # Mail goes out as UTF-8 (Django's default charset), and a browser encodes a link's
        # query in the document's encoding: the mail is shown as a UTF-8 page.
        original = f"<html><body>{anchors}</body></html>"
        rendered = render_html(original, send=send, policy=policy)
        landing.mails.update(original=original, rendered=rendered)
        assert rendered.count(f"{live_server.url}/t/c/") == len(BROWSER_LINKS)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
            )
            page = browser.new_page()
            for n in range(len(BROWSER_LINKS)):
                # Where the untracked mail's link takes the reader...
                page.goto(f"{landing.url}/mail/original")
                page.click(f"#l{n}")
                page.wait_for_url(f"{landing.url}/**")
                direct_url, direct_target = page.url, landing.targets[-1]
                # ...and where the tracked one does.
                page.goto(f"{landing.url}/mail/rendered")
                page.click(f"#l{n}")
                page.wait_for_url(f"{landing.url}/**")
                assert page.url == direct_url
                assert landing.targets[-1] == direct_target
            page.goto(f"{landing.url}/mail/rendered")
            pixel_width = page.evaluate(
                "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            browser.close()
    finally:
        landing.stop()

    assert pixel_width == [[True, 1]]
    clicks = Event.objects.filter(send=send, type=Event.Type.CLICKED).order_by("id")
    assert [event.data["position"] for event in clicks] == list(range(len(BROWSER_LINKS)))
    # One open for each time the rendered mail was shown.
    assert Event.objects.filter(send=send, type=Event.Type.OPENED).count() == len(BROWSER_LINKS) + 1
