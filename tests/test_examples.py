"""The README's examples (examples/send.sh, send.py, send.mjs, follow.mjs) run as a user would
run them, against a live server that delivers to a real SMTP server; and the README's webhook
verification snippets (Python and Node.js), taken from README.md as they are printed, run
against real signed deliveries."""

import base64
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils.datastructures import CaseInsensitiveMapping

from accounts.models import Scope
from fluxomail import webhook_receiver
from sends import events
from sends.models import Event, Send
from tests.receivers import Receiver
from webhooks import delivery, signing
from webhooks.api import rotate_secret
from webhooks.models import Endpoint

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
README = Path(__file__).resolve().parent.parent / "README.md"


def _command(name: str) -> list[str]:
    path = os.path.join(EXAMPLES, name)
    if name.endswith(".py"):
        return [sys.executable, path]
    if name.endswith(".mjs"):
        return [shutil.which("node"), path]  # the `node` mark skips the test without it
    if shutil.which("curl") is None:
        pytest.skip("needs curl for examples/send.sh")
    return ["sh", path]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "example", ["send.sh", "send.py", pytest.param("send.mjs", marks=pytest.mark.node)]
)
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


@pytest.mark.postgres
@pytest.mark.node
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["uvicorn", "runserver"])
def test_follow_example_walks_a_send_through_stream_list_timeline_and_metrics(
    alice, make_key, kind
):
    """examples/follow.mjs, written from SPEC sections 4 and 7 to 9 only, stands in for the
    official SDK's smoke test (the SDK is not on npm). The stream needs a server that keeps it
    open: uvicorn with the ASGI application, as production serves it, or `make run`'s
    runserver."""
    from tests.servers import FaultySmtp, LiveServers

    key = make_key(alice.organization, scopes=[Scope.SEND_EMAIL, Scope.READ_SENDS])
    with (
        FaultySmtp() as smtp,
        LiveServers(count=1, kind=kind, workers=1, smtp_port=smtp.port) as servers,
    ):
        env = dict(os.environ, FLUXOMAIL_URL=servers[0].url, FLUXOMAIL_KEY=key.token)
        result = subprocess.run(
            _command("follow.mjs"), env=env, capture_output=True, text=True, timeout=120
        )

    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    first = Send.objects.get(public_id=summary["sendId"])
    again = Send.objects.get(public_id=summary["resumed"]["sendId"])
    assert [(s.to, s.subject, s.status) for s in (first, again)] == [
        ("user@example.com", "Hello", "sent"),
        ("user@example.com", "Hello again", "sent"),
    ]
    assert first.idempotency_key.startswith("follow-")
    sent = Event.objects.get(send=first)
    assert sent.type == "email.sent"
    assert summary == {
        "ok": True,
        "sendId": first.public_id,
        "events": [sent.public_id],
        "listed": 1,
        "timeline": 1,
        "totalSent": 1,  # read before the second send
        "error": "validation_error",
        "resumed": {"sendId": again.public_id, "events": 1, "repeated": 0},
    }
    # The bad body of step 9 stored nothing: two sends, two messages delivered.
    assert Send.objects.filter(organization=alice.organization).count() == 2
    assert len(smtp.messages) == 2


# -- verifying webhooks (README, "Outbound webhooks") -------------------------------------------


def readme_block(language: str, marker: str) -> str:
    """The one fenced block of README.md in `language` that contains `marker`, as printed."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.M | re.S)
    (block,) = [block for block in blocks if marker in block]
    return block


@pytest.fixture
def deliveries(alice) -> dict:
    """Requests as a customer's server receives them: real attempts of webhooks.delivery to a
    receiver on 127.0.0.1, from an endpoint whose secret was rotated (two v1 signatures)."""
    with Receiver(200) as receiver:
        endpoint = Endpoint(organization=alice.organization, url=receiver.url)
        endpoint.event_types = ["email.*"]
        endpoint.save()
        old = endpoint.secret
        send = Send.objects.create(
            organization=alice.organization,
            endpoint="send",
            to="Zoë <zoe@example.com>",
            subject="Votre reçu",
            status="sent",
        )
        event = events.record(send=send, type="email.delivered", data={"response": "250 OK"})
        (pk,) = delivery.fan_out(event)
        delivery.attempt(pk)
        rotate_secret(endpoint)
        endpoint.save()
        event = events.record(send=send, type="email.opened")
        (pk,) = delivery.fan_out(event)
        delivery.attempt(pk)
    first, rotated = receiver.requests
    assert rotated.headers["webhook-signature"].count("v1,") == 2
    return {"first": first, "rotated": rotated, "old": old, "new": endpoint.secret}


def verification_cases(deliveries: dict) -> list[tuple[str, bytes, dict, str, str]]:
    """(name, raw body, headers, secret, what the snippet must say: "accepted" or its error)."""
    first, rotated, old, new = (deliveries[k] for k in ("first", "rotated", "old", "new"))
    body, headers = first.body, first.headers
    sent_at = int(headers["webhook-timestamp"])
    stale = signing.headers([old], headers["webhook-id"], sent_at - 600, body)
    bad_body, bad_standard = "bad Fluxomail-Signature", "bad webhook-signature"
    too_old = "webhook-timestamp missing or more than 300 s from now"
    return [
        ("as delivered", body, headers, old, "accepted"),
        ("after a rotation, with the new secret", rotated.body, rotated.headers, new, "accepted"),
        ("body changed", body.replace(b"250 OK", b"250 Ok"), headers, old, bad_body),
        ("another secret", body, headers, new, bad_body),
        ("signed 10 minutes before", body, stale, old, too_old),
        # The request sent again with a newer timestamp: the signature no longer matches.
        ("replayed", body, {**headers, "webhook-timestamp": str(sent_at + 1)}, old, bad_standard),
        ("no webhook-timestamp", body, {**headers, "webhook-timestamp": ""}, old, too_old),
        ("no headers", body, {}, old, bad_body),
    ]


def test_the_demo_receiver_checks_with_the_readmes_python_function():
    block = readme_block("python", "def fluxomail_event")
    assert inspect.getsource(webhook_receiver.fluxomail_event) in block


def test_the_readmes_python_verification_accepts_real_deliveries_and_refuses_the_rest(deliveries):
    namespace = {}
    exec(readme_block("python", "def fluxomail_event"), namespace)  # as a user pastes it
    fluxomail_event = namespace["fluxomail_event"]

    def outcome(body: bytes, headers: dict, secret: str) -> str:
        try:
            # Looked up by lower-case name, as Django's request.headers allows.
            event = fluxomail_event(body, CaseInsensitiveMapping(headers), secret)
        except ValueError as exc:
            return str(exc)
        return "accepted" if event == json.loads(body) else f"wrong event: {event}"

    cases = verification_cases(deliveries)
    assert [(name, outcome(body, headers, secret)) for name, body, headers, secret, _ in cases] == [
        (name, expected) for name, *_, expected in cases
    ]


@pytest.mark.node
def test_the_readmes_node_verification_accepts_real_deliveries_and_refuses_the_rest(
    deliveries, tmp_path
):
    (tmp_path / "verify.mjs").write_text(readme_block("js", "function fluxomailEvent"))
    (tmp_path / "run.mjs").write_text(
        'import { readFileSync } from "node:fs";\n'
        'import { fluxomailEvent } from "./verify.mjs";\n'
        'const cases = JSON.parse(readFileSync(0, "utf8"));\n'
        "console.log(JSON.stringify(cases.map(({ body, headers, secret }) => {\n"
        "  try {\n"
        '    return { event: fluxomailEvent(Buffer.from(body, "base64"), headers, secret) };\n'
        "  } catch (error) {\n"
        "    return { error: error.message };\n"
        "  }\n"
        "})));\n"
    )
    cases = verification_cases(deliveries)
    given = [
        {
            "body": base64.b64encode(body).decode(),
            # Node's req.headers: lower-case names.
            "headers": {name.lower(): value for name, value in headers.items()},
            "secret": secret,
        }
        for _, body, headers, secret, _ in cases
    ]
    result = subprocess.run(
        [shutil.which("node"), str(tmp_path / "run.mjs")],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    said = [
        answer.get("error") or ("accepted" if answer["event"] == json.loads(body) else answer)
        for (_, body, *_), answer in zip(cases, answers, strict=True)
    ]
    assert list(zip([name for name, *_ in cases], said, strict=True)) == [
        (name, expected) for name, *_, expected in cases
    ]


@pytest.mark.postgres
@pytest.mark.node
@pytest.mark.django_db(transaction=True)
def test_follow_example_names_the_answer_that_differs_and_exits_1(send_key):
    from tests.servers import LiveServers

    with LiveServers(count=1, kind="uvicorn", workers=1) as servers:
        env = dict(os.environ, FLUXOMAIL_URL=servers[0].url, FLUXOMAIL_KEY=send_key.token)
        result = subprocess.run(
            _command("follow.mjs"), env=env, capture_output=True, text=True, timeout=60
        )

    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "follow.mjs: whoami: expected 200, got 403 "
        "(missing_scope: Forbidden: missing scope read_sends)\n",
    )
    assert not Send.objects.exists()
