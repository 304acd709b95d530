#!/usr/bin/env sh
# Sends one email with curl. FLUXOMAIL_URL (default http://127.0.0.1:8000) and FLUXOMAIL_KEY.
set -eu
curl -sS --fail-with-body -X POST "${FLUXOMAIL_URL:-http://127.0.0.1:8000}/api/v1/emails/send" \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer $FLUXOMAIL_KEY" \
  -H "Idempotency-Key: example-$(date +%s%N)" \
  -d '{"to": "user@example.com", "subject": "Hello", "content": "Hi there", "htmlContent": "<p>Hi there</p>"}'
echo
