"""Bodies sent with `Transfer-Encoding: chunked` and no Content-Length, against live gunicorn.

gunicorn de-chunks the body and ends the stream (`wsgi.input_terminated`), so the service reads
it, up to MAX_REQUEST_BYTES (413 past it). Django's test client cannot send such a request; the
411 answer behind other servers is in test_send_validation.py.
"""

import http.client
import json

import pytest

from sends.models import Send
from tests.conftest import SEED_BODY
from tests.servers import FaultySmtp, LiveServers, Reply

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SEND = "/api/v1/emails/send"


def send_chunked(port: int, token: str, payload: bytes) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            SEND,
            body=(payload[i : i + 1000] for i in range(0, len(payload), 1000)),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def test_gunicorn_reads_a_chunked_body_and_refuses_one_over_the_limit(send_key):
    limit = 4096
    with (
        FaultySmtp() as smtp,
        LiveServers(
            count=1, workers=1, smtp_port=smtp.port, env={"MAX_REQUEST_BYTES": str(limit)}
        ) as servers,
    ):
        port = servers[0].port
        sent = send_chunked(port, send_key.token, json.dumps(SEED_BODY).encode())
        too_large = send_chunked(
            port, send_key.token, json.dumps(dict(SEED_BODY, content="x" * limit)).encode()
        )

    assert sent.status == 200, sent.body
    assert Send.objects.get().public_id == sent.json()["sendId"]
    assert len(smtp.messages) == 1
    assert too_large.status == 413, too_large.body
    assert too_large.json()["code"] == "payload_too_large"
    assert Send.objects.count() == 1
