"""Sends one email with Python's standard library (no package needed).

FLUXOMAIL_URL (default http://127.0.0.1:8000) and FLUXOMAIL_KEY come from the environment.
"""

import json
import os
import urllib.error
import urllib.request
import uuid

url = os.environ.get("FLUXOMAIL_URL", "http://127.0.0.1:8000") + "/api/v1/emails/send"
body = {
    "to": "user@example.com",
    "subject": "Hello",
    "content": "Hi there",
    "htmlContent": "<p>Hi there</p>",
}
request = urllib.request.Request(
    url,
    data=json.dumps(body).encode(),
    headers={
        "Authorization": f"Bearer {os.environ['FLUXOMAIL_KEY']}",
        "Content-Type": "application/json",
        # The same key on a retry can never send twice.
        "Idempotency-Key": f"example-{uuid.uuid4()}",
    },
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.read().decode())
except urllib.error.HTTPError as error:
    # Errors are JSON too: code, message and the field details.
    print(error.code, error.read().decode())
    raise SystemExit(1) from None
