"""GET and POST /api/v1/preferences (SPEC.md section 10): by the recipient's token or by email
with a key; every status; and what a change does to the suppression list."""

import pytest

from accounts.models import Scope
from contacts import tokens
from contacts.models import Category, Contact, Subscription, Suppression, SuppressionChange
from contacts.services import suppress

URL = "/api/v1/preferences"

pytestmark = pytest.mark.django_db


@pytest.fixture
def news(acme) -> Category:
    return Category.objects.create(
        organization=acme, key="news", name="Newsletter", description="Monthly news"
    )


@pytest.fixture
def contact(acme, news) -> Contact:
    return Contact.objects.create(organization=acme, email="reader@example.com")


@pytest.fixture
def token(acme, contact) -> str:
    return tokens.make(acme, contact.email, "bulk")


@pytest.fixture
def read_key(acme, make_key):
    return make_key(acme, scopes=[Scope.PREFERENCES_READ], name="prefs read")


@pytest.fixture
def manage_key(acme, make_key):
    return make_key(acme, scopes=[Scope.PREFERENCES_MANAGE], name="prefs manage")


def expected(contact, *, subscribed=True, bulk=True, news=True) -> dict:
    return {
        "contact": {"id": contact.public_id, "email": "reader@example.com"},
        "categories": [
            {
                "key": "bulk",
                "name": "Announcements and newsletters",
                "description": "Mail sent to many recipients.",
            },
            {"key": "news", "name": "Newsletter", "description": "Monthly news"},
        ],
        "subscriptions": [
            {"categoryKey": "bulk", "subscribed": bulk},
            {"categoryKey": "news", "subscribed": news},
        ],
        "subscribed": subscribed,
    }


def post(api, body, key=None):
    return api.post(URL, body, format="json", **(key.bearer if key else {}))


# -- GET --------------------------------------------------------------------------------------


def test_the_recipient_reads_their_preferences_with_the_token_and_no_key(api, contact, token):
    response = api.get(URL, {"token": token})
    assert response.status_code == 200
    assert response.json() == expected(contact)


def test_a_key_with_preferences_read_reads_them_by_email(api, contact, read_key):
    response = api.get(URL, {"email": "Reader@EXAMPLE.com"}, **read_key.bearer)
    assert response.status_code == 200
    assert response.json() == expected(contact)


def test_the_answer_shows_the_contacts_choices(api, contact, token, news):
    Subscription.objects.create(contact=contact, category=news, subscribed=False)
    Contact.objects.filter(pk=contact.pk).update(subscribed=False)
    contact.refresh_from_db()
    assert api.get(URL, {"token": token}).json() == expected(contact, subscribed=False, news=False)


def test_an_unknown_contact_is_404(api, acme, read_key, news):
    response = api.get(URL, {"email": "nobody@example.com"}, **read_key.bearer)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    by_token = api.get(URL, {"token": tokens.make(acme, "nobody@example.com")})
    assert by_token.status_code == 404
    assert not Contact.objects.exists()


def test_another_organizations_contact_is_404_by_email(api, contact, charlie_key):
    response = api.get(URL, {"email": contact.email}, **charlie_key.bearer)
    assert response.status_code == 404


def test_by_email_without_a_key_is_401(api, contact):
    response = api.get(URL, {"email": contact.email})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_key"
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_key_without_preferences_read_is_403(api, contact, send_key, manage_key):
    for key in (send_key, manage_key):
        response = api.get(URL, {"email": contact.email}, **key.bearer)
        assert response.status_code == 403
        assert response.json()["message"] == "Forbidden: missing scope preferences_read"


def test_a_paused_organization_answers_403_to_keys_but_not_to_recipients(
    api, acme, contact, token, read_key
):
    acme.pause()
    response = api.get(URL, {"email": contact.email}, **read_key.bearer)
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_paused"
    assert api.get(URL, {"token": token}).status_code == 200


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({}, {"token", "email"}),
        ({"token": "x", "email": "reader@example.com"}, {"token", "email"}),
        ({"email": "not an address"}, {"email"}),
        ({"email": "reader@example.com", "limit": "5"}, {"limit"}),
    ],
    ids=["neither", "both", "bad email", "unknown parameter"],
)
def test_a_malformed_query_is_400_naming_the_parameter(api, contact, read_key, query, fields):
    response = api.get(URL, query, **read_key.bearer)
    assert response.status_code == 400
    assert set(response.json()["details"]) == fields


def test_a_bad_token_is_400(api, token):
    response = api.get(URL, {"token": token[:-2]})
    assert response.status_code == 400
    assert response.json()["details"] == {"token": ["Invalid token."]}


# -- POST -------------------------------------------------------------------------------------


def test_the_recipient_changes_categories_and_the_suppression_list_follows(
    api, acme, contact, token, news
):
    body = {"token": token, "subscriptions": [{"categoryKey": "news", "subscribed": False}]}
    response = post(api, body)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert api.get(URL, {"token": token}).json() == expected(contact, news=False)
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.category, suppression.reason) == (
        "reader@example.com",
        "news",
        "unsubscribe",
    )
    assert SuppressionChange.objects.get().actor == "recipient (preferences API)"

    body = {"token": token, "subscriptions": [{"categoryKey": "news", "subscribed": True}]}
    assert post(api, body).status_code == 200
    assert not Suppression.objects.exists()
    assert list(SuppressionChange.objects.values_list("action", flat=True)) == [
        "removed",
        "added",
    ]


def test_a_global_unsubscribe_and_back(api, contact, manage_key):
    body = {"email": contact.email, "subscriptions": [], "subscribed": False}
    assert post(api, body, manage_key).json() == {"ok": True}
    contact.refresh_from_db()
    assert contact.subscribed is False
    assert Suppression.objects.get().category == ""
    assert post(api, dict(body, subscribed=True), manage_key).status_code == 200
    contact.refresh_from_db()
    assert contact.subscribed is True
    assert not Suppression.objects.exists()


def test_resubscribing_never_lifts_a_hard_bounce_or_complaint(api, acme, contact, token):
    for reason in ("hard_bounce", "complaint", "manual"):
        suppress(organization_id=acme.pk, address=contact.email, reason=reason, actor="test")
    body = {"token": token, "subscriptions": [], "subscribed": False}
    post(api, body)
    post(api, dict(body, subscribed=True))
    assert sorted(Suppression.objects.values_list("reason", flat=True)) == [
        "complaint",
        "hard_bounce",
        "manual",
    ]


def test_an_unknown_category_key_is_400_naming_it_and_changes_nothing(api, contact, token):
    body = {
        "token": token,
        "subscribed": False,
        "subscriptions": [
            {"categoryKey": "news", "subscribed": False},
            {"categoryKey": "gossip", "subscribed": False},
        ],
    }
    response = post(api, body)
    assert response.status_code == 400
    assert response.json()["details"] == {"subscriptions": ["Unknown categoryKey 'gossip'."]}
    assert "gossip" in response.json()["message"]
    contact.refresh_from_db()
    assert contact.subscribed is True
    assert not Suppression.objects.exists()
    assert not Subscription.objects.exists()


def test_the_recipients_token_creates_their_contact_on_post(api, acme, news):
    token = tokens.make(acme, "New@Example.com")
    body = {"token": token, "subscriptions": [{"categoryKey": "bulk", "subscribed": False}]}
    assert post(api, body).status_code == 200
    contact = Contact.objects.get()
    assert (contact.organization, contact.email, contact.source) == (
        acme,
        "new@example.com",
        "recipient",
    )


def test_post_by_email_needs_preferences_manage(api, contact, read_key):
    body = {"email": contact.email, "subscriptions": []}
    response = post(api, body, read_key)
    assert response.status_code == 403
    assert response.json()["message"] == "Forbidden: missing scope preferences_manage"
    assert post(api, body).status_code == 401


def test_post_for_an_unknown_or_other_organizations_contact_is_404(
    api, contact, manage_key, charlie_key
):
    body = {"email": "nobody@example.com", "subscriptions": []}
    assert post(api, body, manage_key).status_code == 404
    other = {"email": contact.email, "subscriptions": [], "subscribed": False}
    assert post(api, other, charlie_key).status_code == 404
    contact.refresh_from_db()
    assert contact.subscribed is True


def test_a_token_of_another_organization_changes_only_that_organizations_contact(
    api, contact, globex
):
    Contact.objects.create(organization=globex, email=contact.email)
    token = tokens.make(globex, contact.email)
    post(api, {"token": token, "subscriptions": [], "subscribed": False})
    contact.refresh_from_db()
    assert contact.subscribed is True
    assert Contact.objects.get(organization=globex).subscribed is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "reader@example.com"}, "subscriptions"),
        ({"email": "reader@example.com", "subscriptions": {}}, "subscriptions"),
        ({"email": "reader@example.com", "subscriptions": [], "subscribed": "no"}, "subscribed"),
        (
            {"email": "reader@example.com", "subscriptions": [{"categoryKey": "news"}]},
            "subscriptions[0].subscribed",
        ),
        ({"email": "reader@example.com", "subscriptions": [], "extra": 1}, "extra"),
    ],
    ids=["missing subscriptions", "not a list", "not a boolean", "missing subscribed", "unknown"],
)
def test_a_malformed_body_is_400_naming_the_field(api, contact, manage_key, body, field):
    response = post(api, body, manage_key)
    assert response.status_code == 400
    assert field in response.json()["details"]


def test_a_body_that_is_not_json_is_415(api, manage_key):
    response = api.post(URL, "email=a@b.c", content_type="text/plain", **manage_key.bearer)
    assert response.status_code == 415


def test_a_bad_token_in_the_body_is_400_and_changes_nothing(api, token):
    response = post(api, {"token": token + "x", "subscriptions": [], "subscribed": False})
    assert response.status_code == 400
    assert response.json()["details"] == {"token": ["Invalid token."]}
    assert not Suppression.objects.exists()
