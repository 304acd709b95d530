"""The public pages around the API: landing page, error-code pages, favicon, readiness."""

import pytest
from django.test import Client, override_settings

from fluxomail.api import TITLES
from fluxomail.views import ERROR_DOCS


@pytest.fixture
def client():
    return Client()


def test_the_root_is_a_landing_page_with_the_links_a_new_user_needs(client, db):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Fluxomail</h1>" in html
    for href in ('href="/dashboard/"', 'href="/api/v1/docs"', 'href="/docs/errors/"'):
        assert href in html
    assert 'href="/healthz"' in html and 'href="/readyz"' in html


def test_every_error_code_has_a_page_at_its_problem_type(client, api, db):
    assert set(ERROR_DOCS) == set(TITLES)
    for code in TITLES:
        response = client.get(f"/docs/errors/{code}")
        assert response.status_code == 200, code
        html = response.content.decode()
        assert f'id="{code}"' in html
        assert "What to do:" in html
    # The `type` a real error carries points at one of them.
    problem_type = api.get("/api/v1/sends").json()["type"]
    assert client.get(problem_type).status_code == 200


def test_the_error_index_lists_every_code_and_an_unknown_one_is_404(client, db):
    html = client.get("/docs/errors/").content.decode()

    assert all(f'id="{code}"' in html for code in TITLES)
    assert client.get("/docs/errors/no_such_code").status_code == 404


def test_favicon_and_docs_with_a_trailing_slash_redirect_somewhere_that_answers(client, db):
    favicon = client.get("/favicon.ico")
    docs = client.get("/api/v1/docs/")

    assert favicon.status_code == 301 and favicon["Location"].endswith("favicon.svg")
    assert docs.status_code == 301 and docs["Location"] == "/api/v1/docs"
    assert client.get("/api/v1/docs").status_code == 200


def test_readyz_answers_ok_when_every_part_answers(client, db):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert response.json()["status"] == "ok"
    assert response.json()["checks"]["database"] == "ok"


def test_readyz_names_an_unreachable_cache(client, db):
    closed = "redis://127.0.0.1:1/0"  # nothing listens on port 1: a real refused connection
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": closed,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    # A context manager, so that the cache is restored before the suite's teardown clears it.
    with override_settings(REDIS_URL=closed, CACHES=caches):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["failing"]) == ("error", ["cache"])
    assert body["checks"]["cache"] == "unavailable"
    assert body["checks"]["database"] == body["checks"]["static"] == "ok"


def test_readyz_names_missing_static_files_when_every_page_would_fail(client, db, tmp_path):
    # Found live: a production start without `collectstatic` answered 500 on every page (the
    # landing page, error docs, the unsubscribe and preferences pages, the dashboard) while
    # /readyz said ok, so a load balancer kept sending recipients to it.
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    with override_settings(STORAGES=storages, STATIC_ROOT=tmp_path):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["static"]


def test_readyz_names_an_unreachable_broker(client, db, settings):
    from tests.conftest import free_port

    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}//"  # nothing listens there
    with override_settings(CELERY_BROKER_URL=closed):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    assert response.json()["checks"]["broker"] == "unavailable"


def test_an_unknown_page_is_our_404_page(client, db):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "<title>Page not found · Fluxomail</title>" in html
    assert '<a href="/dashboard/">Dashboard</a>' in html


def test_a_server_error_on_a_page_is_our_500_page(rf):
    from fluxomail.api import handler500

    response = handler500(rf.get("/dashboard/"))

    assert response.status_code == 500
    html = response.content.decode()
    assert "<title>Something went wrong · Fluxomail</title>" in html
    assert "Traceback" not in html
