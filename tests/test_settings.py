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
