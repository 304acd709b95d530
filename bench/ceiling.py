"""Reference B, the bare ceiling of this stack: a plain WSGI app (no framework) served by the
same gunicorn, doing one autocommit INSERT and the SMTP hand-off over connections kept open
per worker (`/ceiling/send`), or the INSERT alone (`/ceiling/insert`, B_insert). It validates
nothing and authenticates nothing: what no implementation of the send API can beat here.
Run by `make bench` only (`gunicorn bench.ceiling:app`), with DATABASE_URL, EMAIL_HOST and
EMAIL_PORT from the environment.
"""

import json
import os
import smtplib
from urllib.parse import urlsplit

import psycopg2

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS bench_ceiling (id bigserial PRIMARY KEY, recipient text NOT NULL,"
    " subject text NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)

_pool: dict[str, object] = {}


def _database():
    connection = _pool.get("db")
    if connection is None or connection.closed:
        url = urlsplit(os.environ["DATABASE_URL"])
        connection = psycopg2.connect(
            host=url.hostname, port=url.port or 5432, user=url.username, dbname=url.path[1:]
        )
        connection.autocommit = True
        _pool["db"] = connection
    return connection


def _smtp() -> smtplib.SMTP:
    client = _pool.get("smtp")
    if client is None:
        client = smtplib.SMTP(os.environ["EMAIL_HOST"], int(os.environ["EMAIL_PORT"]), timeout=10)
        _pool["smtp"] = client
    return client


def _hand_off(recipient: str, subject: str, body: str, row: int) -> None:
    message = (
        f"From: bench@example.com\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{row}@bench.example.com>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    try:
        _smtp().sendmail("bench@example.com", [recipient], message)
    except smtplib.SMTPServerDisconnected:
        _pool.pop("smtp", None)
        _smtp().sendmail("bench@example.com", [recipient], message)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path not in ("/ceiling/send", "/ceiling/insert"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    data = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    recipient, subject, body = data["to"], data["subject"], data["content"]
    with _database().cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_ceiling (recipient, subject, body) VALUES (%s, %s, %s) RETURNING id",
            [recipient, subject, body],
        )
        row = cursor.fetchone()[0]
    if path == "/ceiling/send":
        _hand_off(recipient, subject, body, row)
    payload = json.dumps({"sendId": f"sends_{row}", "status": "sent", "reused": False}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]
