import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

CHECK = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"


def load_settings(code: str = CHECK, **env):
    """Loads the settings in a fresh interpreter with the given environment; runs `code`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    base.update(env, DJANGO_SETTINGS_MODULE="fluxomail.settings")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=base,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_load_with_debug_on():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be a boolean (true/false/1/0), got 'maybe'"),
        ("EMAIL_PORT", "twenty-five", "EMAIL_PORT must be an integer, got 'twenty-five'"),
        ("EMAIL_PORT", "0", "EMAIL_PORT must be at least 1, got 0"),
        ("EMAIL_TIMEOUT", "soon", "EMAIL_TIMEOUT must be a number, got 'soon'"),
        ("IDEMPOTENCY_TTL_SECONDS", "1.5", "IDEMPOTENCY_TTL_SECONDS must be an integer"),
        ("SITE_URL", "example.com", "SITE_URL must start with http:// or https://"),
        ("ANYMAIL", "[1, 2]", "ANYMAIL must be a JSON object"),
        ("FLUXOMAIL_ENV", "staging", "FLUXOMAIL_ENV must be 'development' or 'production'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be a logging level name"),
        ("DELIVERY_MODE", "later", "DELIVERY_MODE must be 'sync' or 'queue', got 'later'"),
        ("WEBHOOK_MAX_ATTEMPTS", "0", "WEBHOOK_MAX_ATTEMPTS must be at least 1, got 0"),
        ("CORS_ALLOWED_ORIGINS", "app.example.com", "got 'app.example.com'"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example.com/", "(scheme and host, no path)"),
        ("CORS_ALLOWED_ORIGINS", "*", "CORS_ALLOWED_ORIGINS must list origins such as"),
    ],
)
def test_malformed_value_fails_loudly(name, value, message):
    result = load_settings(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_cors_allowed_origins_are_read_comma_separated_and_lower_cased():
    code = CHECK.replace("settings.DEBUG", "settings.CORS_ALLOWED_ORIGINS")

    result = load_settings(
        code, CORS_ALLOWED_ORIGINS="https://App.Example.com, http://localhost:3000"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['https://app.example.com', 'http://localhost:3000']"


def test_no_cors_origin_is_allowed_by_default():
    code = CHECK.replace("settings.DEBUG", "settings.CORS_ALLOWED_ORIGINS")

    result = load_settings(code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_production_without_secret_key_fails():
    result = load_settings(FLUXOMAIL_ENV="production", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when FLUXOMAIL_ENV=production" in result.stderr


def test_production_with_secret_key_turns_debug_off():
    result = load_settings(FLUXOMAIL_ENV="production", SECRET_KEY="s" * 50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_email_host_switches_to_the_pooled_smtp_backend():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(EMAIL_HOST="smtp.example.net", EMAIL_PORT="587", EMAIL_USE_TLS="true")
    env["DJANGO_SETTINGS_MODULE"] = "fluxomail.settings"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sends.delivery.PooledSMTPBackend", "smtp.example.net", "587"]


def test_debug_off_with_the_development_secret_key_refuses_to_start():
    result = load_settings(DEBUG="false", SECRET_KEY="")

    assert result.returncode != 0
    assert "DEBUG is off: set SECRET_KEY to a secret value of your own" in result.stderr


def test_production_enables_hsts_for_a_year_and_the_setting_changes_it():
    code = CHECK.replace("settings.DEBUG", "settings.SECURE_HSTS_SECONDS")

    default = load_settings(code, FLUXOMAIL_ENV="production", SECRET_KEY="s" * 50)
    changed = load_settings(
        code, FLUXOMAIL_ENV="production", SECRET_KEY="s" * 50, SECURE_HSTS_SECONDS="600"
    )
    development = load_settings(code)

    assert default.stdout.strip() == "31536000", default.stderr
    assert changed.stdout.strip() == "600", changed.stderr
    assert development.stdout.strip() == "0", development.stderr


def test_check_deploy_is_clean_with_the_readmes_production_settings():
    # DJANGO_ALLOW_ASYNC_UNSAFE is the browser tests' (Playwright's loop), never a deployment's.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_")) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="fluxomail.settings",
        FLUXOMAIL_ENV="production",
        SECRET_KEY=os.urandom(32).hex(),
        SITE_URL="https://mail.example.com",
        ALLOWED_HOSTS="mail.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_log_format_json_writes_one_object_per_line_with_the_request_id_and_no_trace():
    code = (
        "import django, logging; django.setup()\n"
        "from fluxomail.middleware import _request_id\n"
        "_request_id.set('req_abc')\n"
        "log = logging.getLogger('fluxomail.test')\n"
        "log.warning('hello %s', 'world')\n"
        "try:\n"
        "    raise ValueError('SELECT secret FROM keys')\n"
        "except ValueError:\n"
        "    log.exception('failed')\n"
    )
    result = load_settings(code, LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert [(line["level"], line["logger"], line["message"]) for line in lines] == [
        ("WARNING", "fluxomail.test", "hello world"),
        ("ERROR", "fluxomail.test", "failed"),
    ]
    assert {line["request_id"] for line in lines} == {"req_abc"}
    assert "SELECT secret" not in result.stderr
    assert lines[1]["exc_info"].startswith("ValueError (traceback hidden")
