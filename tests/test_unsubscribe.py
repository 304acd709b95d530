"""One-click unsubscribe (RFC 8058): the link in a bulk mail, the POST, the page and the tokens."""

import email
import json
from email import policy as email_policy
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.test import Client

from contacts import tokens
from contacts.models import Category, Contact, Subscription, Suppression, SuppressionChange
from sends.models import Policy
from sends.tracking import click_token

SEND = "/api/v1/emails/send"
ONE_CLICK = "List-Unsubscribe=One-Click"

pytestmark = pytest.mark.django_db


def send(api, key, body):
    return api.post(SEND, body, format="json", **key.bearer)


def unsubscribe_url(smtp_server, index=-1) -> str:
    message = email.message_from_bytes(
        smtp_server.messages[index].content, policy=email_policy.default
    )
    return message["List-Unsubscribe"].strip()[1:-1]


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def one_click(url: str, client: Client | None = None):
    """What a mailbox provider does with List-Unsubscribe-Post (RFC 8058 section 3.1)."""
    return (client or Client()).post(
        local(url), ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )


def nothing_recorded() -> bool:
    return not (
        Suppression.objects.exists()
        or SuppressionChange.objects.exists()
        or Contact.objects.exists()
        or Subscription.objects.exists()
    )


def test_a_bulk_mails_link_unsubscribes_with_the_one_click_post_and_only_bulk_mail_stops(
    api, send_key, seed_body, smtp_server, acme
):
    bulk = dict(seed_body, policyKey="bulk")
    assert send(api, send_key, bulk).json()["status"] == "sent"
    url = unsubscribe_url(smtp_server)

    response = one_click(url)
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    suppression = Suppression.objects.get()
    assert (suppression.organization, suppression.address) == (acme, "user@example.com")
    assert (suppression.category, suppression.reason) == ("bulk", "unsubscribe")
    assert SuppressionChange.objects.get().actor == "recipient (one-click)"
    contact = Contact.objects.get()
    assert (contact.email, contact.subscribed, contact.source) == (
        "user@example.com",
        True,
        "unsubscribe",
    )
    assert Subscription.objects.get(contact=contact).subscribed is False

    # The next bulk mail is dropped; transactional mail still goes out.
    assert send(api, send_key, bulk).json()["status"] == "suppressed"
    assert send(api, send_key, seed_body).json()["status"] == "sent"
    assert len(smtp_server.messages) == 2


def test_a_global_unsubscribe_holds_back_transactional_mail_too(
    api, send_key, seed_body, smtp_server, acme
):
    # A policy with one-click on and no category: its link unsubscribes from all mail.
    Policy.objects.filter(organization=acme, key="transactional").update(one_click_unsubscribe=True)
    send(api, send_key, seed_body)
    assert one_click(unsubscribe_url(smtp_server)).status_code == 200
    suppression = Suppression.objects.get()
    assert (suppression.category, suppression.reason) == ("", "unsubscribe")
    assert Contact.objects.get().subscribed is False
    for policy in ("transactional", "bulk"):
        response = send(api, send_key, dict(seed_body, policyKey=policy))
        assert response.json()["status"] == "suppressed"
    assert len(smtp_server.messages) == 1


def test_posting_twice_is_idempotent(api, send_key, seed_body, smtp_server):
    send(api, send_key, dict(seed_body, policyKey="bulk"))
    url = unsubscribe_url(smtp_server)
    assert one_click(url).status_code == 200
    assert one_click(url).status_code == 200
    assert Suppression.objects.count() == 1
    assert SuppressionChange.objects.count() == 1


def test_the_pages_button_unsubscribes_too(acme):
    token = tokens.make(acme, "user@example.com", "bulk")
    response = Client().post(f"/api/unsubscribe?token={token}")
    assert response.status_code == 200
    assert Suppression.objects.get().category == "bulk"
    assert SuppressionChange.objects.get().actor == "recipient (unsubscribe page)"


def test_get_shows_a_confirmation_page_and_records_nothing(acme):
    token = tokens.make(acme, "user@example.com", "bulk")
    response = Client().get(f"/api/unsubscribe?token={token}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "Unsubscribe from Acme" in html
    assert "Announcements and newsletters" in html
    assert '<form method="post" id="unsubscribe-form">' in html
    assert f'href="http://127.0.0.1:8000/preferences?token={token}"' in html
    assert nothing_recorded()
    assert Client().head(f"/api/unsubscribe?token={token}").status_code == 200
    assert nothing_recorded()


def test_a_paused_organization_still_lets_a_recipient_unsubscribe(acme):
    acme.pause()
    token = tokens.make(acme, "user@example.com")
    assert one_click(f"http://x/api/unsubscribe?token={token}").status_code == 200
    assert Suppression.objects.get().category == ""


def test_unsubscribing_from_one_organization_leaves_another_alone(
    api, charlie_key, seed_body, smtp_server, acme
):
    one_click(f"http://x/api/unsubscribe?token={tokens.make(acme, 'user@example.com')}")
    assert send(api, charlie_key, seed_body).json()["status"] == "sent"


def test_other_methods_are_not_allowed(acme):
    token = tokens.make(acme, "user@example.com")
    assert Client().put(f"/api/unsubscribe?token={token}").status_code == 405
    assert nothing_recorded()


# -- tokens that must not work ---------------------------------------------------------------


def _reencode(token: str, **changes) -> str:
    """The token's payload changed, its timestamp and signature kept."""
    payload, _, rest = token.partition(":")
    data = signing.loads(token, salt=tokens.SALT)
    data.update(changes)
    raw = json.dumps(data, separators=(",", ":")).encode()
    return f"{signing.b64_encode(raw).decode()}:{rest}"


def bad_tokens(acme, globex) -> dict[str, str]:
    Category.objects.create(organization=globex, key="vip", name="VIP")
    good = tokens.make(acme, "user@example.com", "bulk")
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    return {
        "missing": "",
        "garbage": "not-a-token",
        "truncated": good[:-5],
        "altered signature": flipped,
        "altered address": _reencode(good, a="victim@example.com"),
        "forged (another secret)": signing.dumps(
            {"o": "acme", "a": "user@example.com", "c": "bulk"}, salt=tokens.SALT, key="guess"
        ),
        "cross-organization (payload moved to globex)": _reencode(good, o="globex"),
        "wrong scope (bulk turned into all mail)": _reencode(good, c=""),
        "wrong scope (a category acme does not have)": tokens.make(acme, "user@example.com", "vip"),
        "another purpose (a click-tracking token)": click_token("sends_x", 0, "https://a.test/"),
        "unknown organization": signing.dumps(
            {"o": "nobody", "a": "user@example.com", "c": ""}, salt=tokens.SALT
        ),
        "extra member": signing.dumps(
            {"o": "acme", "a": "user@example.com", "c": "", "x": "1"}, salt=tokens.SALT
        ),
    }


def test_bad_tokens_are_refused_with_400_and_nothing_is_recorded(acme, globex):
    for name, token in bad_tokens(acme, globex).items():
        response = one_click(f"http://x/api/unsubscribe?token={token}")
        assert response.status_code == 400, name
        assert response.json()["code"] == "validation_error", name
        assert response.json()["details"] == {"token": ["Invalid token."]}, name
        page = Client().get("/api/unsubscribe", {"token": token})
        assert page.status_code == 400, name
        assert "This link is not valid" in page.content.decode(), name
    assert nothing_recorded()


def test_a_token_carries_the_organization_address_and_scope_and_nothing_else(acme):
    token = tokens.make(acme, "Reader <Reader@Example.COM>", "bulk")
    assert signing.loads(token, salt=tokens.SALT) == {
        "o": "acme",
        "a": "reader@example.com",
        "c": "bulk",
    }
    target = tokens.read(token)
    assert (target.organization, target.address, target.category) == (
        acme,
        "reader@example.com",
        "bulk",
    )
    assert parse_qs(urlsplit(tokens.unsubscribe_url(token)).query) == {"token": [token]}
