"""POST /api/v1/contacts/sync (SPEC.md section 10): rows, counts, idempotency, bounds, tenancy."""

import pytest

from accounts.models import Scope
from contacts.models import (
    Category,
    Contact,
    Subscription,
    Suppression,
    SuppressionChange,
    SyncEvent,
    SyncRequest,
)
from contacts.services import suppress
from tests.locks import wait_for_a_lock_wait

URL = "/api/v1/contacts/sync"

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync_key(acme, make_key):
    return make_key(acme, scopes=[Scope.CONTACTS_WRITE], name="crm")


def sync(api, key, body, idempotency_key=None):
    extra = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    return api.post(URL, body, format="json", **key.bearer, **extra)


def counts(answer: dict, **nonzero) -> dict:
    keys = ["created", "updated", "failed", "skippedStale", "skippedDuplicate"]
    keys += ["unsubscribed", "resubscribed"]
    return {k: answer[k] for k in keys} == {k: nonzero.get(k, 0) for k in keys}


def test_a_sync_creates_then_updates_contacts(api, sync_key, acme):
    body = {
        "source": "crm",
        "contacts": [
            {
                "email": "Ada@Example.com",
                "externalId": "u-1",
                "name": "Ada",
                "plan": "pro",
                "state": "active",
                "subscribed": True,
                "sourceUpdatedAt": "2026-11-01T10:00:00Z",
                "planStartedAt": 1790000000000,
                "planEndsAt": None,
                "categories": ["bulk"],
                "metadata": {"seats": 3, "tier": "gold"},
                "eventId": "e-1",
            },
            {"email": "bob@example.com", "eventId": "e-2"},
        ],
    }
    response = sync(api, sync_key, body)
    assert response.status_code == 200
    answer = response.json()
    assert answer == {
        "ok": True,
        "source": "crm",
        "processed": 2,
        "created": 2,
        "updated": 0,
        "failed": 0,
        "skippedStale": 0,
        "skippedDuplicate": 0,
        "unsubscribed": 0,
        "resubscribed": 0,
        "replayed": False,
        "syncedAt": answer["syncedAt"],
        "errors": [],
    }
    assert answer["syncedAt"].endswith("Z")
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.organization, ada.external_id, ada.name, ada.plan, ada.state, ada.source) == (
        acme,
        "u-1",
        "Ada",
        "pro",
        "active",
        "crm",
    )
    assert ada.metadata == {"seats": 3, "tier": "gold"}
    assert ada.plan_started_at.isoformat() == "2026-09-21T14:13:20+00:00"
    assert ada.public_id.startswith("contacts_")
    assert Subscription.objects.get(contact=ada).subscribed is True

    again = sync(
        api, sync_key, {"source": "crm", "contacts": [{"email": "ada@example.com", "plan": "max",
                                                       "eventId": "e-3"}]}
    )  # fmt: skip
    assert counts(again.json(), updated=1)
    ada.refresh_from_db()
    assert (ada.plan, ada.name) == ("max", "Ada")  # fields a row leaves out stay as they were


def test_an_idempotency_key_replays_the_answer_and_applies_nothing_twice(api, sync_key):
    body = {"source": "crm", "contacts": [{"email": "ada@example.com", "subscribed": False}]}
    first = sync(api, sync_key, body, "sync-1")
    assert first.status_code == 200
    assert first["Idempotency-Key"] == "sync-1"
    assert counts(first.json(), created=1, unsubscribed=1)
    Contact.objects.all().delete()
    again = sync(api, sync_key, body, '"sync-1"')
    assert again.status_code == 200
    assert again["Idempotency-Replayed"] == "true"
    assert again.json() == {**first.json(), "replayed": True}
    assert not Contact.objects.exists()


def test_the_same_key_with_another_body_is_422(api, sync_key):
    sync(api, sync_key, {"source": "crm", "contacts": [{"email": "a@example.com"}]}, "k")
    response = sync(api, sync_key, {"source": "crm", "contacts": [{"email": "b@example.com"}]}, "k")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert not Contact.objects.filter(email="b@example.com").exists()


def test_without_a_key_every_row_needs_an_event_id(api, sync_key):
    body = {"source": "crm", "contacts": [{"email": "a@example.com", "eventId": "e-1"},
                                          {"email": "b@example.com"}]}  # fmt: skip
    response = sync(api, sync_key, body)
    assert response.status_code == 400
    assert set(response.json()["details"]) == {"Idempotency-Key", "contacts"}
    assert not Contact.objects.exists()
    assert not SyncEvent.objects.exists()


def test_a_malformed_idempotency_key_is_400(api, sync_key):
    body = {"source": "crm", "contacts": [{"email": "a@example.com"}]}
    response = sync(api, sync_key, body, "x" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["details"]
    assert not SyncRequest.objects.exists()


def test_a_repeated_event_id_is_skipped_as_a_duplicate(api, sync_key):
    row = {"email": "ada@example.com", "name": "Ada", "eventId": "e-1"}
    assert counts(sync(api, sync_key, {"source": "crm", "contacts": [row]}).json(), created=1)
    later = {"source": "crm", "contacts": [dict(row, name="Changed"), dict(row, name="Again")]}
    assert counts(sync(api, sync_key, later).json(), skippedDuplicate=2)
    assert Contact.objects.get().name == "Ada"
    # ... within one batch too.
    batch = {"source": "crm", "contacts": [dict(row, eventId="e-9"), dict(row, eventId="e-9")]}
    assert counts(sync(api, sync_key, batch).json(), updated=1, skippedDuplicate=1)


def test_a_row_older_than_the_stored_one_is_skipped_as_stale(api, sync_key):
    def row(name, stamp, event):
        return {"email": "ada@example.com", "name": name, "sourceUpdatedAt": stamp,
                "eventId": event}  # fmt: skip

    sync(api, sync_key, {"source": "crm", "contacts": [row("New", "2026-11-02T00:00:00Z", "1")]})
    older = {"source": "crm", "contacts": [row("Old", 1790000000000, "2")]}  # 2026-09-21
    assert counts(sync(api, sync_key, older).json(), skippedStale=1)
    same = {"source": "crm", "contacts": [row("Same", "2026-11-02T00:00:00", "3")]}
    assert counts(sync(api, sync_key, same).json(), updated=1)
    assert Contact.objects.get().name == "Same"


def test_deleted_removes_the_contact_and_keeps_its_suppressions(api, sync_key, acme):
    sync(api, sync_key, {"source": "crm", "contacts": [{"email": "ada@example.com",
                                                         "subscribed": False}]}, "k1")  # fmt: skip
    body = {"source": "crm", "contacts": [{"email": "ada@example.com", "deleted": True}]}
    assert counts(sync(api, sync_key, body, "k2").json(), updated=1)
    assert not Contact.objects.exists()
    assert Suppression.objects.get().reason == "unsubscribe"
    # Deleting an unknown contact changes nothing.
    assert counts(sync(api, sync_key, body, "k3").json())


def test_bad_rows_are_reported_and_the_others_applied(api, sync_key):
    body = {
        "source": "crm",
        "contacts": [
            {"email": "not an address"},
            {"email": "ok@example.com"},
            {"email": "late@example.com", "sourceUpdatedAt": "yesterday"},
            {"email": "cat@example.com", "categories": ["gossip"]},
            {"email": "odd@example.com", "colour": "red"},
            "not an object",
            {"email": 5},
            {"email": "nul@example.com", "metadata": {"k": "a\u0000b"}},
        ],
    }
    answer = sync(api, sync_key, body, "k").json()
    assert counts(answer, created=1, failed=7)
    assert answer["processed"] == 8
    assert answer["errors"] == [
        {"email": "not an address", "message": "email: Enter a valid email address."},
        {
            "email": "late@example.com",
            "message": "sourceUpdatedAt: Must be an ISO 8601 date-time or epoch milliseconds.",
        },
        {"email": "odd@example.com", "message": "colour: Unknown field."},
        {"email": "", "message": "contact: Expected an object."},
        {"email": "", "message": "email: Not a valid string."},
        {
            "email": "nul@example.com",
            "message": "metadata: Must not contain NUL or unpaired surrogate characters.",
        },
        {"email": "cat@example.com", "message": "Unknown category 'gossip'."},
    ]
    assert list(Contact.objects.values_list("email", flat=True)) == ["ok@example.com"]


def test_subscribed_flags_move_the_suppression_list_but_never_lift_a_bounce(api, sync_key, acme):
    suppress(organization_id=acme.pk, address="ada@example.com", reason="hard_bounce", actor="t")
    off = {"source": "crm", "contacts": [{"email": "ada@example.com", "subscribed": False}]}
    assert counts(sync(api, sync_key, off, "k1").json(), created=1, unsubscribed=1)
    assert sorted(Suppression.objects.values_list("reason", flat=True)) == [
        "hard_bounce",
        "unsubscribe",
    ]
    on = {"source": "crm", "contacts": [{"email": "ada@example.com", "subscribed": True}]}
    assert counts(sync(api, sync_key, on, "k2").json(), updated=1, resubscribed=1)
    assert list(Suppression.objects.values_list("reason", flat=True)) == ["hard_bounce"]
    assert counts(sync(api, sync_key, on, "k3").json(), updated=1)


def test_categories_may_be_a_list_or_an_object(api, sync_key, acme):
    news = Category.objects.create(organization=acme, key="news", name="News")
    row = {"email": "ada@example.com", "categories": {"news": False, "bulk": True}}
    body = {"source": "crm", "contacts": [row]}
    sync(api, sync_key, body, "k1")
    contact = Contact.objects.get()
    assert Subscription.objects.get(contact=contact, category=news).subscribed is False
    assert Suppression.objects.get().category == "news"
    body["contacts"][0]["categories"] = ["news"]
    sync(api, sync_key, body, "k2")
    assert Subscription.objects.get(contact=contact, category=news).subscribed is True
    assert not Suppression.objects.exists()


def test_the_list_is_bounded_before_any_row_is_read(api, sync_key):
    too_many = {"source": "crm", "contacts": [None] * 1001}
    response = sync(api, sync_key, too_many, "k1")
    assert response.status_code == 400
    assert response.json()["details"] == {"contacts": ["Expected a list of 1 to 1000 contacts."]}
    empty = sync(api, sync_key, {"source": "crm", "contacts": []}, "k2")
    assert empty.status_code == 400
    assert not SyncRequest.objects.exists()


def test_an_address_with_a_nul_character_is_a_failed_row_never_a_500(api, sync_key):
    # Found live on PostgreSQL: {"email": "a\u0000b@example.com"} answered 500 (the lookup
    # by address sent the NUL to the database), and so did a NUL in a display name.
    rows = [
        {"email": "a\u0000b@example.com"},
        {"email": "Name\u0000 <c@example.com>"},
        {"email": "ok@example.com"},
    ]
    response = sync(api, sync_key, {"source": "crm", "contacts": rows}, "k")
    assert response.status_code == 200
    assert counts(response.json(), created=1, failed=2)
    assert list(Contact.objects.values_list("email", flat=True)) == ["ok@example.com"]


FULL_ROW = {
    "externalId": "u-1",
    "name": "Ada",
    "plan": "pro",
    "state": "active",
    "sourceUpdatedAt": 1790000000000,
    "planStartedAt": "2026-09-21T14:13:20Z",
    "planEndsAt": None,
    "metadata": {"seats": 3},
}


@pytest.mark.parametrize("full", [False, True], ids=["bare rows", "every field"])
def test_a_thousand_contact_sync_costs_a_bounded_number_of_queries(
    api, sync_key, acme, django_assert_max_num_queries, full
):
    # Found live through gunicorn: 1,000 bare rows took 8.5 s (75 ordinary sends), 1,000 rows
    # with every field 30 s, at the worker timeout, when each row cost its own queries. The
    # rows are now applied in memory and written in bulk.
    Category.objects.create(organization=acme, key="news", name="News")
    rows = [{"email": f"user{i}@example.com", "subscribed": i % 2 == 0} for i in range(1000)]
    if full:
        rows = [
            {**row, **FULL_ROW, "categories": {"news": i % 4 == 0, "bulk": True}}
            for i, row in enumerate(rows)
        ]
    with django_assert_max_num_queries(100):
        response = sync(api, sync_key, {"source": "crm", "contacts": rows}, "k")
    assert counts(response.json(), created=1000, unsubscribed=500)
    # The same rows again, each choice turned over: updates, also bounded.
    again = [{**row, "subscribed": not row["subscribed"]} for row in rows]
    with django_assert_max_num_queries(100):
        response = sync(api, sync_key, {"source": "crm", "contacts": again}, "k2")
    assert counts(response.json(), updated=1000, unsubscribed=500, resubscribed=500)
    unsubscribed = Suppression.objects.filter(category="", reason="unsubscribe")
    assert sorted(unsubscribed.values_list("address", flat=True)) == sorted(
        row["email"] for row in again if not row["subscribed"]
    )
    assert Contact.objects.filter(subscribed=False).count() == 500
    if full:
        assert Subscription.objects.filter(category__key="news", subscribed=False).count() == 750
        assert Suppression.objects.filter(category="news").count() == 750


def test_rows_of_one_address_apply_in_order_within_a_batch(api, sync_key, acme):
    rows = [
        {"email": "ada@example.com", "subscribed": False, "categories": {"bulk": False}},
        {"email": "Ada@Example.com", "subscribed": True, "name": "First"},
        {"email": "ada@example.com", "deleted": True},
        {"email": "ada@example.com", "name": "Second"},
        {"email": "bob@example.com", "name": "Bob", "sourceUpdatedAt": 1790000100000},
        {"email": "bob@example.com", "name": "Older", "sourceUpdatedAt": 1790000000000},
    ]
    answer = sync(api, sync_key, {"source": "crm", "contacts": rows}, "k").json()

    assert counts(answer, created=3, updated=2, skippedStale=1, unsubscribed=1, resubscribed=1)
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.name, ada.subscribed) == ("Second", True)
    assert not Subscription.objects.exists()  # the first contact's went with it
    assert Contact.objects.get(email="bob@example.com").name == "Bob"
    # The suppression list follows the last choice for each scope; the log says what changed.
    assert list(Suppression.objects.values_list("address", "category", "reason")) == [
        ("ada@example.com", "bulk", "unsubscribe")
    ]
    assert list(SuppressionChange.objects.values_list("action", "category", "actor")) == [
        ("added", "bulk", "sync crm")
    ]


def test_a_stored_contact_deleted_and_created_again_is_a_new_contact(api, sync_key):
    first = {"email": "ada@example.com", "name": "Ada", "categories": ["bulk"]}
    sync(api, sync_key, {"source": "crm", "contacts": [first]}, "k1")
    old = Contact.objects.get()
    rows = [{"email": "ada@example.com", "deleted": True}, {"email": "ada@example.com"}]

    answer = sync(api, sync_key, {"source": "crm", "contacts": rows}, "k2").json()

    assert counts(answer, created=1, updated=1)
    new = Contact.objects.get()
    assert new.public_id != old.public_id
    assert new.name == ""
    assert not Subscription.objects.exists()


def test_a_thousand_contacts_are_one_call(api, sync_key):
    rows = [{"email": f"user{i}@example.com", "eventId": f"e-{i}"} for i in range(1000)]
    answer = sync(api, sync_key, {"source": "crm", "contacts": rows}).json()
    assert counts(answer, created=1000)
    assert Contact.objects.count() == 1000


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"contacts": [{"email": "a@example.com"}]}, {"source"}),
        ({"source": "", "contacts": [{"email": "a@example.com"}]}, {"source"}),
        ({"source": "crm", "contacts": "a@example.com"}, {"contacts"}),
        ({"source": "crm", "contacts": [{"email": "a@example.com"}], "dryRun": True}, {"dryRun"}),
        (["not", "an", "object"], {"body"}),
        ({"source": "c\u0000rm", "contacts": [{"email": "a@example.com"}]}, {"source"}),
    ],
    ids=[
        "no source",
        "empty source",
        "contacts not a list",
        "unknown field",
        "not an object",
        "NUL in source",
    ],
)
def test_a_malformed_body_is_400_and_stores_nothing(api, sync_key, body, fields):
    response = sync(api, sync_key, body, "k")
    assert response.status_code == 400
    assert set(response.json()["details"]) == fields
    assert not SyncRequest.objects.exists()
    assert not Contact.objects.exists()


def test_a_body_that_is_not_json_is_415(api, sync_key):
    response = api.post(URL, "a@example.com", content_type="text/csv", **sync_key.bearer)
    assert response.status_code == 415


def test_the_contacts_write_scope_is_required(api, send_key, read_key):
    body = {"source": "crm", "contacts": [{"email": "a@example.com", "eventId": "1"}]}
    assert api.post(URL, body, format="json").status_code == 401
    for key in (send_key, read_key):
        response = sync(api, key, body)
        assert response.status_code == 403
        assert response.json()["message"] == "Forbidden: missing scope contacts_write"
    assert not Contact.objects.exists()


def test_a_paused_organization_is_403(api, sync_key, acme):
    acme.pause()
    response = sync(api, sync_key, {"source": "crm", "contacts": [{"email": "a@example.com"}]}, "k")
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_paused"


def test_another_organizations_contacts_are_never_touched(api, sync_key, charlie_key, globex):
    sync(api, sync_key, {"source": "crm", "contacts": [{"email": "ada@example.com",
                                                         "name": "Acme's Ada"}]}, "k")  # fmt: skip
    body = {"source": "erp", "contacts": [{"email": "ada@example.com", "name": "Globex's Ada",
                                           "deleted": False}]}  # fmt: skip
    assert counts(sync(api, charlie_key, body, "k").json(), created=1)
    names = dict(Contact.objects.values_list("organization__slug", "name"))
    assert names == {"acme": "Acme's Ada", "globex": "Globex's Ada"}
    # The same event id in two organizations is two events.
    row = {"email": "x@example.com", "eventId": "same"}
    assert counts(sync(api, sync_key, {"source": "crm", "contacts": [row]}).json(), created=1)
    assert counts(sync(api, charlie_key, {"source": "erp", "contacts": [row]}).json(), created=1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_apply_the_batch_once(sync_key, monkeypatch):
    """The second request's claim waits on the first's uncommitted INSERT (PostgreSQL's unique
    index), then replays the first answer."""
    import threading

    from django.db import connections
    from rest_framework.test import APIClient

    from contacts import sync as sync_module

    original = sync_module._apply
    release = threading.Event()

    def held_apply(*args, **kwargs):
        answer = original(*args, **kwargs)
        release.wait(30)  # keep the claim's transaction open until the other request waits
        return answer

    monkeypatch.setattr(sync_module, "_apply", held_apply)
    body = {"source": "crm", "contacts": [{"email": "ada@example.com", "subscribed": False}]}
    answers = []

    def call():
        try:
            answers.append(sync(APIClient(), sync_key, body, "same-key"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for_a_lock_wait()  # until one backend waits on the other's lock (at most 30 s)
    release.set()
    for thread in threads:
        thread.join(60)
    assert sorted(a.status_code for a in answers) == [200, 200]
    bodies = sorted((a.json() for a in answers), key=lambda b: b["replayed"])
    assert [b["replayed"] for b in bodies] == [False, True]
    assert bodies[1] == {**bodies[0], "replayed": True}
    assert Contact.objects.count() == 1
    assert Suppression.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_sync_racing_an_unsubscribe_logs_only_what_it_changed(sync_key, acme):
    """A recipient unsubscribes while a sync unsubscribes the same address: the sync read the
    list before the recipient's row was committed, so its INSERT waits on it (PostgreSQL's
    unique index) and then adds nothing: the log names the recipient only."""
    import threading

    from django.db import connections, transaction
    from rest_framework.test import APIClient

    emails = ["ada@example.com", "bob@example.com"]
    sync(APIClient(), sync_key, {"source": "crm", "contacts": [{"email": e} for e in emails]}, "0")
    inserted, release = threading.Event(), threading.Event()

    def recipient():
        try:
            with transaction.atomic():
                suppress(
                    organization_id=acme.pk,
                    address="ada@example.com",
                    reason="unsubscribe",
                    actor="recipient",
                )
                inserted.set()
                release.wait(30)  # commit only once the sync waits on this row
        finally:
            connections.close_all()

    answers = []

    def crm():
        try:
            body = {
                "source": "crm",
                "contacts": [{"email": e, "subscribed": False} for e in emails],
            }
            answers.append(sync(APIClient(), sync_key, body, "1"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=recipient)]
    threads[0].start()
    assert inserted.wait(30)
    threads.append(threading.Thread(target=crm))
    threads[1].start()
    if not wait_for_a_lock_wait():
        pytest.fail("the sync never waited on the recipient's row")
    release.set()
    for thread in threads:
        thread.join(60)

    assert [a.status_code for a in answers] == [200]
    assert counts(answers[0].json(), updated=2, unsubscribed=2)
    assert sorted(Suppression.objects.values_list("address", "actor")) == [
        ("ada@example.com", "recipient"),
        ("bob@example.com", "sync crm"),
    ]
    added = SuppressionChange.objects.filter(action="added")
    assert sorted(added.values_list("address", "actor")) == [
        ("ada@example.com", "recipient"),
        ("bob@example.com", "sync crm"),
    ]
