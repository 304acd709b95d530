"""The README's examples (examples/send.sh, send.py, send.mjs) run as a user would run them,
against a live server that delivers to a real SMTP server."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from sends.models import Send

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def _command(name: str) -> list[str]:
    path = os.path.join(EXAMPLES, name)
    if name.endswith(".py"):
        return [sys.executable, path]
    if name.endswith(".mjs"):
        node = shutil.which("node")
        if node is None:
            pytest.skip("needs Node.js 18+ (node) for examples/send.mjs")
        return [node, path]
    if shutil.which("curl") is None:
        pytest.skip("needs curl for examples/send.sh")
    return ["sh", path]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("example", ["send.sh", "send.py", "send.mjs"])
def test_each_example_sends_one_email_through_a_live_server(send_key, example):
    from tests.servers import FaultySmtp, LiveServers

    command = _command(example)
    with FaultySmtp() as smtp, LiveServers(count=1, smtp_port=smtp.port) as servers:
        env = dict(os.environ, FLUXOMAIL_URL=servers[0].url, FLUXOMAIL_KEY=send_key.token)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == "sent" and answer["reused"] is False
    send = Send.objects.get(public_id=answer["sendId"])
    assert (send.to, send.subject, send.status) == ("user@example.com", "Hello", "sent")
    assert send.idempotency_key.startswith("example-")
    assert len(smtp.messages) == 1
