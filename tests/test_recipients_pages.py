"""Recipients in the owners' dashboard and the operators' admin: the suppression list (add,
remove with a reason, CSV), contacts and a contact's page; every change attributed."""

import csv
import io

import pytest
from django.contrib.auth.models import User

from contacts.models import Category, Contact, Subscription, Suppression, SuppressionChange
from contacts.services import suppress
from sends import events
from sends.models import Event, Send

pytestmark = pytest.mark.django_db

RECIPIENT_URLS = [
    "/dashboard/suppressions/",
    "/dashboard/suppressions.csv",
    "/dashboard/suppressions/remove",
    "/dashboard/contacts/",
    "/dashboard/contacts/contacts_x/",
]


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice.user)
    return client


@pytest.fixture
def bounced(acme) -> Suppression:
    """A hard bounce recorded from the event log, on a send of Acme's."""
    send = Send.objects.create(
        organization=acme, endpoint="send", to="Ada <ada@example.com>", subject="Hi", status="sent"
    )
    event = events.record(send=send, type=Event.Type.BOUNCED, data={"bounceType": "hard"})
    return Suppression.objects.get(source_event=event.public_id)


@pytest.mark.parametrize("url", RECIPIENT_URLS)
def test_anonymous_visitors_are_sent_to_the_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_suppression_list_shows_reason_and_source_event(alice_client, bounced, globex):
    suppress(organization_id=globex.pk, address="secret@globex.test", reason="manual", actor="x")
    response = alice_client.get("/dashboard/suppressions/")
    assert response.status_code == 200
    assert "Content-Security-Policy" in response
    html = response.content.decode()
    send_id = Event.objects.get(public_id=bounced.source_event).send.public_id
    assert 'data-address="ada@example.com"' in html
    assert "hard bounce" in html
    assert f'href="/dashboard/sends/{send_id}/"><code>{bounced.source_event}</code>' in html
    assert "secret@globex.test" not in html


def test_an_owner_adds_a_manual_suppression_with_a_reason(alice_client, alice, acme):
    response = alice_client.post(
        "/dashboard/suppressions/",
        {"address": "Someone@Example.COM", "category": "bulk", "note": "asked by phone"},
    )
    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert (suppression.organization, suppression.address) == (acme, "someone@example.com")
    assert (suppression.category, suppression.reason) == ("bulk", "manual")
    change = SuppressionChange.objects.get()
    assert (change.action, change.user, change.note) == ("added", alice.user, "asked by phone")
    assert change.actor == "owner alice (dashboard)"


def test_a_bad_address_or_missing_reason_is_refused(alice_client):
    response = alice_client.post("/dashboard/suppressions/", {"address": "nope", "note": ""})
    assert response.status_code == 400
    assert not Suppression.objects.exists()


def test_an_owner_removes_a_suppression_giving_a_reason(alice_client, alice, bounced):
    query = "?address=ada%40example.com&category=&reason=hard_bounce"
    page = alice_client.get(f"/dashboard/suppressions/remove{query}")
    assert page.status_code == 200
    assert "Remove this suppression?" in page.content.decode()
    assert Suppression.objects.exists()
    refused = alice_client.post(
        "/dashboard/suppressions/remove",
        {"address": "ada@example.com", "category": "", "reason": "hard_bounce", "note": ""},
    )
    assert refused.status_code == 400
    assert Suppression.objects.exists()
    response = alice_client.post(
        "/dashboard/suppressions/remove",
        {"address": "ada@example.com", "category": "", "reason": "hard_bounce", "note": "fixed"},
    )
    assert response.status_code == 302
    assert not Suppression.objects.exists()
    removed = SuppressionChange.objects.get(action="removed")
    assert (removed.user, removed.note, removed.source_event) == (
        alice.user,
        "fixed",
        bounced.source_event,
    )


def test_removing_an_unsubscribe_resubscribes_the_contact(alice_client, acme):
    contact = Contact.objects.create(organization=acme, email="ada@example.com", subscribed=False)
    suppress(organization_id=acme.pk, address=contact.email, reason="unsubscribe", actor="r")
    alice_client.post(
        "/dashboard/suppressions/remove",
        {"address": contact.email, "category": "", "reason": "unsubscribe", "note": "asked"},
    )
    contact.refresh_from_db()
    assert contact.subscribed is True


def test_members_see_the_list_but_cannot_change_it(client, bob, bounced):
    client.force_login(bob.user)
    assert client.get("/dashboard/suppressions/").status_code == 200
    add = client.post("/dashboard/suppressions/", {"address": "x@example.com", "note": "n"})
    assert add.status_code == 403
    remove = client.post(
        "/dashboard/suppressions/remove",
        {"address": "ada@example.com", "category": "", "reason": "hard_bounce", "note": "n"},
    )
    assert remove.status_code == 403
    assert Suppression.objects.count() == 1


def test_another_organizations_suppression_cannot_be_removed(alice_client, globex):
    suppress(organization_id=globex.pk, address="ada@example.com", reason="manual", actor="x")
    response = alice_client.post(
        "/dashboard/suppressions/remove",
        {"address": "ada@example.com", "category": "", "reason": "manual", "note": "n"},
    )
    assert response.status_code == 404
    assert Suppression.objects.count() == 1


def test_csv_export_lists_every_suppression_of_the_organization(alice_client, acme, bounced):
    suppress(organization_id=acme.pk, address="=cmd@example.com", reason="manual", actor="x",
             note="=HYPERLINK()")  # fmt: skip
    response = alice_client.get("/dashboard/suppressions.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["address", "scope", "reason", "source_event", "actor", "note", "created_at"]
    assert rows[1][:5] == [
        "ada@example.com",
        "all",
        "hard_bounce",
        bounced.source_event,
        f"event {bounced.source_event}",
    ]
    # Spreadsheet formulas are defused.
    assert rows[2][0] == "'=cmd@example.com"
    assert rows[2][5] == "'=HYPERLINK()"
    assert len(rows) == 3


def test_a_contacts_page_shows_subscriptions_suppressions_and_sends(alice_client, acme, bounced):
    news = Category.objects.create(organization=acme, key="news", name="Newsletter")
    contact = Contact.objects.create(organization=acme, email="ada@example.com", name="Ada")
    Subscription.objects.create(contact=contact, category=news, subscribed=False)
    listing = alice_client.get("/dashboard/contacts/?q=ADA@example.com").content.decode()
    assert f'href="/dashboard/contacts/{contact.public_id}/"' in listing
    html = alice_client.get(f"/dashboard/contacts/{contact.public_id}/").content.decode()
    assert '<tr data-category="news"><td>Newsletter</td><td><code>news</code></td><td>no</td>' in (
        html
    )
    assert '<tr data-category="bulk">' in html
    assert "hard bounce" in html
    send = Send.objects.get()
    assert f'href="/dashboard/sends/{send.public_id}/"' in html
    assert "added · hard_bounce" in html


def test_another_organizations_contact_is_404(alice_client, globex):
    contact = Contact.objects.create(organization=globex, email="ada@example.com")
    assert alice_client.get(f"/dashboard/contacts/{contact.public_id}/").status_code == 404
    assert contact.public_id not in alice_client.get("/dashboard/contacts/").content.decode()


def test_a_suppressed_send_shows_its_status_and_reason(alice_client, acme, bounced):
    send = Send.objects.create(
        organization=acme, endpoint="send", to="ada@example.com", subject="Hi", status="suppressed"
    )
    events.record(
        send=send,
        type=Event.Type.DROPPED,
        data={"reason": "suppressed", "suppressionReason": "hard_bounce"},
    )
    listing = alice_client.get("/dashboard/sends/?status=suppressed").content.decode()
    assert send.public_id in listing
    html = alice_client.get(f"/dashboard/sends/{send.public_id}/").content.decode()
    assert "Not sent: the address is on the suppression list (hard bounce)." in html


# -- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def operator(client) -> User:
    user = User.objects.create_superuser("olga", "olga@example.com", "correct horse battery")
    client.force_login(user)
    return user


def test_the_admin_searches_suppressions_by_address(client, operator, bounced):
    response = client.get("/admin/contacts/suppression/?q=ADA@Example.com")
    assert response.status_code == 200
    assert "ada@example.com" in response.content.decode()
    other = client.get("/admin/contacts/suppression/?q=bob@example.com").content.decode()
    assert "ada@example.com" not in other


def test_the_admin_adds_a_suppression_with_a_reason_and_logs_who(client, operator, acme):
    response = client.post(
        "/admin/contacts/suppression/add/",
        {
            "organization": acme.pk,
            "address": "Spam@Example.com",
            "category": "",
            "reason": "manual",
            "note": "abuse report by mail",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.actor) == ("spam@example.com", "operator olga")
    change = SuppressionChange.objects.get()
    assert (change.user, change.note) == (operator, "abuse report by mail")


def test_the_admin_removes_suppressions_only_with_a_reason(client, operator, bounced):
    url = "/admin/contacts/suppression/"
    chosen = {"action": "remove_with_reason", "_selected_action": [bounced.pk]}
    ask = client.post(url, chosen)
    assert ask.status_code == 200
    assert "Remove 1 suppression(s)?" in ask.content.decode()
    assert Suppression.objects.exists()
    empty = client.post(url, {**chosen, "apply": "Remove", "note": ""})
    assert empty.status_code == 200
    assert Suppression.objects.exists()
    done = client.post(url, {**chosen, "apply": "Remove", "note": "mailbox exists again"})
    assert done.status_code == 302
    assert not Suppression.objects.exists()
    change = SuppressionChange.objects.get(action="removed")
    assert (change.actor, change.user, change.note) == (
        "operator olga",
        operator,
        "mailbox exists again",
    )
    # No bare delete without a reason.
    assert client.get(f"{url}{bounced.pk}/delete/").status_code in (403, 302)


def test_the_admin_lists_contacts_categories_and_the_change_log(client, operator, acme, bounced):
    Contact.objects.create(organization=acme, email="ada@example.com")
    for url in (
        "/admin/contacts/contact/?q=ada@example.com",
        "/admin/contacts/category/",
        "/admin/contacts/suppressionchange/",
        "/admin/sends/policy/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert ("ada@example.com" in response.content.decode()) or "bulk" in (
            response.content.decode()
        ), url
