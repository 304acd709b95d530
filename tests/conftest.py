"""Shared fixtures: the personas, an API client, and the real parts (SMTP, PostgreSQL, Redis).

Personas: alice owns Acme and has keys of several scopes, bob is a member of Acme, charlie owns
Globex (the other organization). Tests that need a part the machine lacks are skipped with a
reason; FLUXOMAIL_REQUIRE (set by .ci/run) turns those skips into failures, so CI never passes
by skipping them.
"""

import atexit
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization, Scope
from fluxomail import hotcache
from fluxomail.celery import app as celery_app
from fluxomail.settings import filesystem_broker_options

# The filesystem job broker of this test session, shared with the live servers and workers it
# starts (tests/servers.py, tests/workers.py); never the development queue in var/jobs.
JOBS_DIR = Path(tempfile.mkdtemp(prefix="fluxomail-jobs-"))
atexit.register(shutil.rmtree, JOBS_DIR, True)
REQUIRED = {p.strip() for p in os.environ.get("FLUXOMAIL_REQUIRE", "").split(",") if p.strip()}
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Headless, and nothing that reaches for the network this machine does not have.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing_part(name: str) -> str | None:
    """Why the part `name` cannot be used here, or None when it can."""
    if name == "postgres":
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    elif name == "redis":
        if not settings.REDIS_URL:
            return "needs Redis: set REDIS_URL=redis://..."
    elif name == "rabbitmq":
        if not settings.CELERY_BROKER_URL.startswith("amqp://"):
            return "needs RabbitMQ: set CELERY_BROKER_URL=amqp://..."
    elif name == "browser":
        if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
            return f"needs headless Chromium at {CHROMIUM} (apt-get install chromium)"
        try:
            import playwright  # noqa: F401
        except ImportError:
            return "needs the playwright package"
    elif name == "node":
        if shutil.which("node") is None:
            return "needs Node.js (node) for the JavaScript examples"
    return None


def pytest_runtest_setup(item):
    for part in ("postgres", "redis", "rabbitmq", "browser", "node"):
        if item.get_closest_marker(part) is None:
            continue
        reason = _missing_part(part)
        if reason is None:
            continue
        if part in REQUIRED:
            pytest.fail(f"FLUXOMAIL_REQUIRE={part} but this run {reason[0].lower()}{reason[1:]}")
        pytest.skip(reason)


@pytest.fixture(autouse=True, scope="session")
def _job_broker():
    """Jobs published by the tests go to this session's folder (or the RabbitMQ of the
    environment), never to the development queue."""
    if settings.CELERY_BROKER_URL == "filesystem://":
        options = filesystem_broker_options(JOBS_DIR)
        for name in ("data_folder_in", "control_folder"):
            Path(options[name]).mkdir(exist_ok=True)
        celery_app.conf.broker_transport_options = options
    yield


@pytest.fixture
def still_clock():
    """The clock stands still for the test: a fixed rate-limit window (the login throttle's
    10/m) cannot turn between its attempts, which would start the count again."""
    import time_machine

    with time_machine.travel(time.time(), tick=False):
        yield


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.USAGE_FLUSH_SECONDS = 0
    cache.clear()
    hotcache.clear_all()  # rolled-back rows reuse ids on SQLite
    yield
    cache.clear()
    hotcache.clear_all()


@dataclass
class Persona:
    user: object
    organization: Organization
    password: str = "correct horse battery"


def _user(django_user_model, username):
    return django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password="correct horse battery"
    )


@pytest.fixture
def acme(db) -> Organization:
    return Organization.objects.create(
        name="Acme", slug="acme", from_name="Acme", from_email="hello@acme.test"
    )


@pytest.fixture
def globex(db) -> Organization:
    return Organization.objects.create(
        name="Globex", slug="globex", from_name="Globex", from_email="hi@globex.test"
    )


@pytest.fixture
def alice(django_user_model, acme) -> Persona:
    user = _user(django_user_model, "alice")
    Membership.objects.create(user=user, organization=acme, role=Membership.Role.OWNER)
    return Persona(user, acme)


@pytest.fixture
def bob(django_user_model, acme) -> Persona:
    user = _user(django_user_model, "bob")
    Membership.objects.create(user=user, organization=acme, role=Membership.Role.MEMBER)
    return Persona(user, acme)


@pytest.fixture
def charlie(django_user_model, globex) -> Persona:
    user = _user(django_user_model, "charlie")
    Membership.objects.create(user=user, organization=globex, role=Membership.Role.OWNER)
    return Persona(user, globex)


@dataclass
class Key:
    key: ApiKey
    token: str

    @property
    def bearer(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}


@pytest.fixture
def make_key(db):
    def make(organization, *, scopes=None, rate_limit=None, name="key", **kwargs) -> Key:
        key, token = ApiKey.objects.create_key(
            organization=organization,
            name=name,
            scopes=list(scopes) if scopes is not None else [Scope.SEND_EMAIL],
            rate_limit_per_minute=rate_limit,
            **kwargs,
        )
        return Key(key, token)

    return make


@pytest.fixture
def alice_key(alice, make_key) -> Key:
    """Acme's key with every scope."""
    return make_key(
        alice.organization, scopes=Scope.values, name="alice all", created_by=alice.user
    )


@pytest.fixture
def send_key(alice, make_key) -> Key:
    """Acme's key with send_email only."""
    return make_key(alice.organization, scopes=[Scope.SEND_EMAIL], name="alice send")


@pytest.fixture
def read_key(alice, make_key) -> Key:
    """Acme's key with read_sends only."""
    return make_key(alice.organization, scopes=[Scope.READ_SENDS], name="alice read")


@pytest.fixture
def empty_key(alice, make_key) -> Key:
    """Acme's key with an empty scope list (may send, nothing else)."""
    return make_key(alice.organization, scopes=[], name="alice legacy")


@pytest.fixture
def charlie_key(charlie, make_key) -> Key:
    """Globex's key with every scope."""
    return make_key(charlie.organization, scopes=Scope.values, name="charlie all")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


SEED_BODY = {
    "to": "user@example.com",
    "subject": "Hello",
    "content": "Hi there",
    "htmlContent": "<p>Hi there</p>",
}


@pytest.fixture
def seed_body() -> dict:
    """The JSON body of shared/seed/send-global.md."""
    return dict(SEED_BODY)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_cache(settings, _test_settings):
    """The caches pointed at a closed port on 127.0.0.1 (Redis down), the rate-limit counters'
    included; the settings are restored before the autouse fixture's cache.clear()."""
    original, original_alias = settings.CACHES, settings.RATELIMIT_USE_CACHE
    closed = {
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
    }
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", **closed},
        "ratelimit": {"BACKEND": "fluxomail.throttling.RedisCounterCache", **closed},
    }
    settings.RATELIMIT_USE_CACHE = "ratelimit"
    yield
    settings.CACHES, settings.RATELIMIT_USE_CACHE = original, original_alias


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives."""

    def __init__(self, port: int):
        from aiosmtpd.controller import Controller

        self.port = port
        self.messages: list = []
        self.reply: str | None = None  # e.g. "550 5.1.1 No such user" to refuse
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                if sink.reply:
                    return sink.reply
                sink.messages.append(envelope)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=port)

    def start(self) -> "SmtpSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def use_smtp_server(settings, port: int, *, timeout: float = 5) -> None:
    """Points Django's email settings at the SMTP server on 127.0.0.1:`port`."""
    settings.EMAIL_BACKEND = "sends.delivery.PooledSMTPBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = timeout


@pytest.fixture
def smtp_server(settings):
    """Points Django's email settings at a fresh aiosmtpd server on 127.0.0.1 (no pooled
    connection to an earlier test's server is reused)."""
    from sends.delivery import PooledSMTPBackend

    PooledSMTPBackend.close_all()
    sink = SmtpSink(free_port()).start()
    use_smtp_server(settings, sink.port)
    yield sink
    PooledSMTPBackend.close_all()
    sink.stop()
