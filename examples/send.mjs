// Sends one email with Node 18+'s built-in fetch: `node examples/send.mjs`.
// FLUXOMAIL_URL (default http://127.0.0.1:8000) and FLUXOMAIL_KEY come from the environment.
import { randomUUID } from "node:crypto";

const url = (process.env.FLUXOMAIL_URL ?? "http://127.0.0.1:8000") + "/api/v1/emails/send";
const response = await fetch(url, {
  method: "POST",
  headers: {
    Authorization: `Bearer ${process.env.FLUXOMAIL_KEY}`,
    "Content-Type": "application/json",
    // The same key on a retry can never send twice.
    "Idempotency-Key": `example-${randomUUID()}`,
  },
  body: JSON.stringify({
    to: "user@example.com",
    subject: "Hello",
    content: "Hi there",
    htmlContent: "<p>Hi there</p>",
  }),
});
const body = await response.json();
console.log(JSON.stringify(body));
if (!response.ok) {
  // Errors carry code, message and details (the field errors); requestId helps support.
  console.error(`${response.status} ${body.code}: ${body.message}`);
  process.exit(1);
}
