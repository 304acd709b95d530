"""Security properties across the service: keys never logged, hostile text escaped in pages,
SQL metacharacters harmless in filters, tracking tokens unforgeable, the admin staff-only.

Pages and endpoints that other parts of the service provide are looked up by URL name; a test
whose page does not exist in this build says so in its skip reason.
"""

import logging
import re

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.urls import NoReverseMatch, reverse

from accounts.models import ApiKey
from sends.models import Event, Message, Send
from tests.conftest import SEED_BODY

FULL_KEY = re.compile(r"flx_[A-Za-z0-9]{8}_[A-Za-z0-9]{20,}")
SCRIPT = "<script>alert('xss')</script>"


def url_or_skip(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        pytest.skip(f"no {name!r} page in this build")


def assert_no_key_material(text: str, tokens: list[str]) -> None:
    assert FULL_KEY.search(text) is None, FULL_KEY.search(text).group(0)
    for token in tokens:
        secret = token.rsplit("_", 1)[1]
        assert secret not in text
        assert token not in text


# -- API keys never reach a log ---------------------------------------------------------------


def _exercise_keys(request, tokens: list[str], revoked: str) -> list[int]:
    """Every way a key travels: good and bad, both headers, revoked, malformed, in errors."""
    statuses = []
    for token in tokens:
        statuses.append(request(SEED_BODY, {"Authorization": f"Bearer {token}"}))
        statuses.append(request(SEED_BODY, {"X-Api-Key": token}))
        statuses.append(request({"to": "nope"}, {"Authorization": f"Bearer {token}"}))
        statuses.append(request(SEED_BODY, {"Authorization": f"Bearer {token}x"}))
        statuses.append(request(SEED_BODY, {"Authorization": f"Basic {token}"}))
        statuses.append(request(SEED_BODY, {"Authorization": f"Bearer {token[:-1]}"}))
    statuses.append(request(SEED_BODY, {"Authorization": f"Bearer {revoked}"}))
    return statuses


def test_api_keys_never_appear_in_the_logs_of_in_process_requests(
    api, alice, make_key, caplog, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    tokens = [make_key(alice.organization, name=f"k{i}").token for i in range(2)]
    revoked = make_key(alice.organization, name="revoked")
    revoked.key.revoke()
    caplog.set_level(logging.DEBUG)

    def request(body, headers):
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        return api.post("/api/v1/emails/send", body, format="json", **extra).status_code

    statuses = _exercise_keys(request, tokens, revoked.token)

    assert 401 in statuses and 400 in statuses
    assert caplog.records  # the requests were logged at all
    assert_no_key_material(caplog.text, [*tokens, revoked.token])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_api_keys_never_appear_in_any_live_server_log_of_the_session(alice, make_key):
    from tests.servers import FaultySmtp, LiveServers, all_logs

    tokens = [make_key(alice.organization, name=f"k{i}").token for i in range(2)]
    revoked = make_key(alice.organization, name="revoked")
    revoked.key.revoke()
    with FaultySmtp() as smtp, LiveServers(count=1, smtp_port=smtp.port) as servers:

        def request(body, headers):
            return servers[0].request("POST", "/api/v1/emails/send", body=body, headers=headers)

        statuses = [reply.status for reply in _exercise_keys(request, tokens, revoked.token)]
        # A delivery failure's log lines too.
        smtp.mode, smtp.reply = "reply", "550 5.1.1 No such user"
        failed = request(SEED_BODY, {"Authorization": f"Bearer {tokens[0]}"})

    assert 200 in statuses and 401 in statuses and failed.status == 500
    logs = all_logs()  # this test's server and every other live server of this session
    assert "POST /api/v1/emails/send" in logs
    assert_no_key_material(logs, [*tokens, revoked.token])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_unsubscribe_tokens_never_appear_in_a_live_servers_access_log(alice):
    # Found live: gunicorn's access log line is the request line with its query string, so the
    # recipient's token (which unsubscribes and changes preferences) was written to the log.
    from urllib.parse import quote

    from contacts import tokens
    from tests.servers import LiveServers

    with LiveServers(count=1) as servers:
        # Signed with the live server's own key, as its mails' links are.
        with override_settings(SECRET_KEY=servers[0].env["SECRET_KEY"]):
            token = tokens.make(alice.organization, "reader@example.com")
        query = quote(token, safe=":")
        for path in ("/api/unsubscribe", "/preferences", "/api/v1/preferences"):
            assert servers[0].request("GET", f"{path}?token={query}").status in (200, 404)
        log = servers[0].log.read_text()

    assert "GET /api/unsubscribe" in log
    assert token.rsplit(":", 1)[1] not in log


def test_every_key_issued_during_this_test_run_is_absent_from_stored_rows(alice, make_key):
    token = make_key(alice.organization).token
    key = ApiKey.objects.get()
    stored = " ".join(str(getattr(key, f.attname)) for f in ApiKey._meta.concrete_fields)
    assert token not in stored
    assert token.rsplit("_", 1)[1] not in stored


# -- hostile text is escaped in the admin and the dashboard -----------------------------------


@pytest.fixture
def hostile_send(alice, alice_key) -> Send:
    send = Send.objects.create(
        organization=alice.organization,
        api_key=alice_key.key,
        endpoint="send",
        to=f'"{SCRIPT}" <victim@example.com>',
        subject=f"Hello {SCRIPT}",
        status=Send.Status.SENT,
        metadata={"note": SCRIPT},
    )
    Message.objects.create(
        send=send,
        from_email="hello@acme.test",
        to=["victim@example.com"],
        provider="smtp",
        provider_message_id="<m@acme.test>",
        text=f"Hi {SCRIPT}",
        html=f"<p>Hi</p>{SCRIPT}<img src=x onerror=alert(1)>",
        headers={"X-Note": SCRIPT},
    )
    return send


def assert_escaped(html: str) -> None:
    assert SCRIPT not in html
    assert "<img src=x onerror" not in html


@pytest.fixture
def staff_client(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-12345678")
    client = Client()
    client.force_login(user)
    return client


def test_admin_escapes_script_in_organization_and_key_names(staff_client, alice, make_key):
    alice.organization.name = f"Acme {SCRIPT}"
    alice.organization.save()
    make_key(alice.organization, name=f"key {SCRIPT}")
    for url in ("/admin/accounts/organization/", "/admin/accounts/apikey/"):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "&lt;script&gt;" in html, url
        assert_escaped(html)


def test_admin_escapes_script_in_sends(staff_client, hostile_send):
    changelist = url_or_skip("admin:sends_send_changelist")
    change = url_or_skip("admin:sends_send_change", hostile_send.pk)
    for url in (changelist, change):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "&lt;script&gt;" in html, url
        assert_escaped(html)


def test_dashboard_escapes_script_in_recent_sends_and_send_detail(client, alice, hostile_send):
    sends = url_or_skip("dashboard-sends")
    detail = url_or_skip("dashboard-send", hostile_send.public_id)
    client.force_login(alice.user)
    for url in (sends, detail):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "&lt;script&gt;" in html, url
        assert_escaped(html)


def test_dashboard_preview_of_hostile_html_cannot_run_script(client, alice, hostile_send):
    preview = url_or_skip("dashboard-send-preview", hostile_send.public_id)
    client.force_login(alice.user)
    response = client.get(preview)
    assert response.status_code == 200
    # Shown as the mail client would, but inside a sandbox with scripts off.
    csp = response.get("Content-Security-Policy", "")
    assert "sandbox" in csp or "script-src 'none'" in csp, csp


# -- the admin is for staff only --------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/accounts/apikey/", "/admin/accounts/organization/"]
)
def test_admin_refuses_a_logged_in_member_who_is_not_staff(client, bob, path):
    client.force_login(bob.user)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_refuses_anonymous_visitors(client):
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/accounts/apikey/"


def test_admin_login_refuses_a_non_staff_password(client, bob):
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "bob", "password": bob.password, "next": "/admin/"},
    )
    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session


# -- SQL metacharacters in every filter of GET /api/v1/sends ----------------------------------

SQL_PAYLOADS = [
    "' OR '1'='1",
    "'; DROP TABLE sends_send; --",
    '" OR ""="',
    "%",
    "_",
    "\\",
    "1) OR (1=1",
    "' UNION SELECT digest FROM accounts_apikey --",
]


def _list_filters() -> list[str]:
    try:
        from sends.timeline import SendListQuery
    except ImportError:
        return []
    return sorted(SendListQuery().fields)


@pytest.mark.parametrize("payload", SQL_PAYLOADS)
def test_sql_metacharacters_in_every_send_list_filter_are_plain_data(
    api, alice_key, charlie_key, payload
):
    filters = _list_filters()
    if not filters:
        pytest.skip("GET /api/v1/sends has no filters in this build")
    Send.objects.create(
        organization=charlie_key.key.organization, endpoint="send", to="x@globex.test", subject="s"
    )
    for name in filters:
        response = api.get("/api/v1/sends", {name: payload}, **alice_key.bearer)
        assert response.status_code in (200, 400), (name, response.status_code)
        body = response.json()
        if response.status_code == 400:
            assert body["code"] == "validation_error"
        else:
            # Another organization's send never leaks, whatever the filter says.
            assert "x@globex.test" not in response.content.decode(), name
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sends_send")
        assert cursor.fetchone()[0] == 1


# -- tracking tokens cannot be forged or moved to another send --------------------------------


def _tracking():
    try:
        from sends import tracking
    except ImportError:
        return None
    if not hasattr(tracking, "click_url"):
        return None
    return tracking


@pytest.fixture
def two_sends(alice, charlie) -> tuple[Send, Send]:
    mine = Send.objects.create(
        organization=alice.organization, endpoint="send", to="a@x.test", subject="a", status="sent"
    )
    theirs = Send.objects.create(
        organization=charlie.organization,
        endpoint="send",
        to="c@x.test",
        subject="c",
        status="sent",
    )
    return mine, theirs


def _click_path(tracking, send: Send, url: str) -> str:
    return tracking.click_url(send.public_id, 0, url).split("://", 1)[1].split("/", 1)[1]


def test_forged_click_tokens_redirect_nowhere_and_record_nothing(client, two_sends):
    tracking = _tracking()
    if tracking is None:
        pytest.skip("no click tracking in this build")
    mine, _ = two_sends
    url_or_skip("tracking-click", "x")
    genuine = "/" + _click_path(tracking, mine, "https://shop.example.com/a")
    token = genuine.rsplit("/", 1)[1]
    payload, _, signature = token.rpartition(":")
    forgeries = [
        genuine[: -len(signature)] + "A" * len(signature),  # a made-up signature
        "/t/c/" + payload,  # no signature at all
        "/t/c/" + token.replace(payload, payload[::-1]),  # another payload, same signature
    ]
    for path in forgeries:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Location" not in response
    assert not mine.events.exists()


def test_a_click_token_cannot_be_moved_onto_another_send_or_url(client, two_sends):
    tracking = _tracking()
    if tracking is None:
        pytest.skip("no click tracking in this build")
    mine, theirs = two_sends
    token = _click_path(tracking, mine, "https://shop.example.com/a").rsplit("/", 1)[1]
    payload, _, signature = token.rpartition(":")
    other = _click_path(tracking, theirs, "https://evil.example.com/").rsplit("/", 1)[1]
    other_payload = other.rpartition(":")[0]
    # Their payload with my signature, and my click token used as an open token.
    assert client.get(f"/t/c/{other_payload}:{signature}").status_code == 404
    assert client.get(f"/t/o/{token}.gif").status_code == 404
    # Replaying the genuine token counts on its own send only, and goes to its own URL.
    for _ in range(2):
        response = client.get(f"/t/c/{token}")
        assert response.status_code == 302
        assert response["Location"] == "https://shop.example.com/a"
    assert mine.events.filter(type=Event.Type.CLICKED).count() == 2
    assert not theirs.events.exists()


def test_an_open_token_names_exactly_one_send(client, two_sends):
    tracking = _tracking()
    if tracking is None or not hasattr(tracking, "open_url"):
        pytest.skip("no open tracking in this build")
    mine, theirs = two_sends
    path = "/" + tracking.open_url(mine.public_id).split("://", 1)[1].split("/", 1)[1]
    token = path.rsplit("/", 1)[1].removesuffix(".gif")
    value, _, signature = token.rpartition(":")
    forged = f"/t/o/{theirs.public_id}:{signature}.gif"
    assert client.get(forged).status_code == 404
    assert client.get(path).status_code == 200
    assert mine.events.filter(type=Event.Type.OPENED).count() == 1
    assert not theirs.events.exists()
