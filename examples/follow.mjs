// Sends one email and follows it through every reader of its events, with Node 20's built-ins
// only (fetch, no package): `node examples/follow.mjs`.
// FLUXOMAIL_URL (default http://127.0.0.1:8000) and FLUXOMAIL_KEY (an API key with the scopes
// send_email and read_sends) come from the environment. It prints one JSON line and exits 0,
// or names the first answer that differs from the API's contract and exits 1.
//
// 1 who am I (an empty list) -> 2 a short-lived stream token -> 3 open the event stream ->
// 4 send -> 5 the send's email.sent arrives on the stream -> 6 the same envelopes in the
// events list -> 7 and in the send's timeline -> 8 metrics -> 9 an error a client can read ->
// 10 reconnect with Last-Event-ID: what was missed arrives, nothing comes twice.
import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";

const BASE = process.env.FLUXOMAIL_URL ?? "http://127.0.0.1:8000";
const KEY = process.env.FLUXOMAIL_KEY;
const WAIT_MS = 30_000; // how long to wait for an event on the stream

const EVENT_TYPES = [
  "email.sent", "email.delivered", "email.delayed", "email.bounced", "email.complained",
  "email.opened", "email.clicked", "email.failed", "email.dropped",
];
const METRICS = [
  "totalSent", "totalDelivered", "deliveryRate", "totalOpened", "uniqueOpens", "avgOpenRate",
  "totalClicked", "uniqueClicks", "avgClickRate", "avgClickToOpenRate", "totalBounced",
  "bounceRate", "totalComplained", "complaintRate", "totalDelayed", "delayedRate",
];
const PROBLEM = [
  "type", "title", "status", "detail", "code", "error", "message", "details", "requestId",
];
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/; // ISO 8601, UTC, milliseconds

class Mismatch extends Error {}

function check(condition, message) {
  if (!condition) throw new Mismatch(message);
}

/** Checks that `actual` deep-equals `expected`, showing both otherwise. */
function expectEqual(actual, expected, what) {
  const [got, wanted] = [JSON.stringify(actual), JSON.stringify(expected)];
  check(isDeepStrictEqual(actual, expected), `${what}: got ${got}, expected ${wanted}`);
}

/** Answers may grow new members: a client checks the ones it reads and ignores the others. */
function expectMembers(object, members, what) {
  const missing = members.filter((member) => !Object.hasOwn(object ?? {}, member));
  check(missing.length === 0, `${what}: no ${missing.join(", ")} in ${JSON.stringify(object)}`);
}

/** One API request with the key. The body is read as JSON only when its media type contains
 * application/json, as the official SDK does. */
async function call(method, path, { body, headers = {} } = {}) {
  const response = await fetch(BASE + path, {
    method,
    headers: {
      Authorization: `Bearer ${KEY}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = response.headers.get("content-type") ?? "";
  const json = type.includes("application/json") ? await response.json() : null;
  if (json === null) await response.arrayBuffer(); // frees the connection
  return { status: response.status, headers: response.headers, type, json };
}

/** The JSON of a 200 answer; any other answer is a Mismatch that shows the server's error. */
async function ok(what, method, path, options) {
  const reply = await call(method, path, options);
  const said = reply.json ? `${reply.json.code}: ${reply.json.message}` : reply.type;
  check(reply.status === 200, `${what}: expected 200, got ${reply.status} (${said})`);
  check(reply.json !== null, `${what}: a 200 without a JSON body (${reply.type})`);
  return reply.json;
}

function checkEnvelope(envelope, where) {
  expectMembers(envelope, ["id", "type", "created", "data"], `${where}: envelope`);
  check(/^evt_\w+$/.test(envelope.id), `${where}: id ${envelope.id}`);
  check(EVENT_TYPES.includes(envelope.type), `${where}: type ${envelope.type}`);
  check(ISO_MS.test(envelope.created), `${where}: created ${envelope.created} (not UTC with ms)`);
  const members = ["sendId", "providerMessageId", "to", "subject", "metadata"];
  expectMembers(envelope.data, members, `${where}: ${envelope.id}'s data`);
}

// -- Server-Sent Events over fetch (the format of the HTML standard) ---------------------------

/** Yields each event of an event stream as {id, event, data}; comments (`: ping`) and `retry`
 * are read and skipped, as an EventSource does. */
async function* sseEvents(body) {
  const decoder = new TextDecoder();
  let buffer = "";
  let [data, id, event] = [[], null, null];
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (;;) {
      // Lines end with CRLF, LF or CR; a CR at the end of the buffer may be half of a CRLF.
      const end = buffer.search(/[\r\n]/);
      if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(buffer.startsWith("\r\n", end) ? end + 2 : end + 1);
      if (line === "") {
        // A blank line ends the event; one without data is no event.
        if (data.length > 0) yield { id, event, data: data.join("\n") };
        [data, id, event] = [[], null, null];
      } else if (!line.startsWith(":")) {
        // `field: value` (one space after the colon is not part of the value); `: …` is a
        // comment that keeps the connection alive.
        const colon = line.includes(":") ? line.indexOf(":") : line.length;
        const [name, value] = [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, "")];
        if (name === "data") data.push(value);
        else if (name === "id" && !value.includes("\0")) id = value;
        else if (name === "event") event = value;
      }
    }
  }
}

/** Opens the organization's event stream with the short-lived token in the query, as an
 * EventSource does (it cannot send an Authorization header). */
async function openStream(token, { query = {}, headers = {} } = {}) {
  const params = new URLSearchParams({ token, ...query });
  const controller = new AbortController();
  const response = await fetch(`${BASE}/api/v1/events/stream?${params}`, {
    headers: { Accept: "text/event-stream", ...headers },
    signal: controller.signal,
  });
  check(response.status === 200, `stream: expected 200, got ${response.status}`);
  const type = response.headers.get("content-type") ?? "";
  check(type.startsWith("text/event-stream"), `stream: content type ${type}`);
  const events = sseEvents(response.body);
  return {
    /** Reads envelopes until `done(envelope)` is true; returns every envelope read. */
    async until(done, what) {
      const timer = setTimeout(() => controller.abort(), WAIT_MS);
      const seen = [];
      try {
        for (;;) {
          const { value: frame, done: ended } = await events.next();
          check(!ended, `stream: ended while waiting for ${what}`);
          // EventSource's onmessage (and the SDK) never sees a named event: none may come.
          check(frame.event === null, `stream: a named event (event: ${frame.event})`);
          const envelope = JSON.parse(frame.data);
          checkEnvelope(envelope, "stream");
          // The id line is what a reconnecting EventSource sends back as Last-Event-ID.
          expectEqual(frame.id, envelope.id, "stream: id line");
          seen.push(envelope);
          if (done(envelope)) return seen;
        }
      } catch (error) {
        if (controller.signal.aborted) throw new Mismatch(`stream: no ${what} in ${WAIT_MS} ms`);
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => controller.abort(),
  };
}

// -- Sending -----------------------------------------------------------------------------------

async function send(subject) {
  // The same key on a retry can never send twice.
  const idempotencyKey = `follow-${randomUUID()}`;
  const body = {
    to: "user@example.com",
    subject,
    content: "Hi there",
    htmlContent: "<p>Hi there</p>",
    metadata: { example: "follow" }, // comes back in every event of the send
  };
  const headers = { "Idempotency-Key": idempotencyKey };
  const answer = await ok("send", "POST", "/api/v1/emails/send", { body, headers });
  check(/^sends_\w+$/.test(answer.sendId), `send: sendId ${answer.sendId}`);
  check(["sent", "queued"].includes(answer.status), `send: status ${answer.status}`);
  expectEqual(answer.reused, false, "send: reused");
  return answer;
}

/** Whether an envelope is the email.sent of `sendId`; a send that cannot go out ends with
 * email.failed or email.dropped instead, which stops the walk. */
function isSentEventOf(sendId) {
  return (envelope) => {
    if (envelope.data.sendId !== sendId) return false;
    const ended = ["email.failed", "email.dropped"].includes(envelope.type);
    check(!ended, `send ${sendId}: ${envelope.type} (${envelope.data.reason})`);
    return envelope.type === "email.sent";
  };
}

// -- The walk ----------------------------------------------------------------------------------

async function main() {
  check(KEY, "set FLUXOMAIL_KEY to an API key with the scopes send_email and read_sends");

  // 1. Who am I: the key is valid and may read events (limit=0 answers an empty list).
  const empty = await ok("whoami", "GET", "/api/v1/events?limit=0");
  expectEqual(empty, { events: [], nextCursor: null }, "whoami");

  // 2. A short-lived token for the stream: a browser should never hold the API key.
  const minted = await ok("token", "POST", "/api/v1/tokens", {
    body: { ttlSeconds: 300, scopes: ["read_sends"] },
  });
  check(/^flxt_/.test(minted.token), "token: does not start with flxt_");
  check(!Number.isNaN(Date.parse(minted.expiresAt)), `token: expiresAt ${minted.expiresAt}`);

  // 3. Open the stream from the newest stored event (`since`): the send's events then arrive
  //    however soon the send follows the connection.
  const [newest] = (await ok("newest event", "GET", "/api/v1/events?limit=1")).events;
  const since = newest?.id ?? "0"; // "0": epoch ms, the very beginning
  const stream = await openStream(minted.token, { query: { since } });

  // 4. Send one email.
  const first = await send("Hello");

  // 5. Its email.sent envelope arrives on the stream.
  const streamed = await stream.until(isSentEventOf(first.sendId), `email.sent of ${first.sendId}`);
  stream.close();
  check(!streamed.some((envelope) => envelope.id === since), "stream: the `since` event again");
  const ours = streamed.filter((envelope) => envelope.data.sendId === first.sendId);
  const sent = ours.at(-1);
  const { to, subject, metadata, providerMessageId } = sent.data;
  expectEqual(
    { to, subject, metadata },
    { to: "user@example.com", subject: "Hello", metadata: { example: "follow" } },
    `stream: ${sent.id}'s data`,
  );
  if (first.status === "sent") {
    expectEqual(providerMessageId, first.messageId, "stream: providerMessageId (the messageId)");
  }

  // 6. The same envelopes in the events list, filtered by their types, paged with the cursor.
  const types = [...new Set(ours.map((envelope) => envelope.type))];
  const listed = new Map();
  let cursor = null;
  do {
    const query = new URLSearchParams([...types.map((type) => ["types", type]), ["limit", "10"]]);
    if (cursor) query.set("cursor", cursor);
    const page = await ok("events list", "GET", `/api/v1/events?${query}`);
    expectMembers(page, ["events", "nextCursor"], "events list");
    for (const envelope of page.events) {
      checkEnvelope(envelope, "events list");
      check(types.includes(envelope.type), `events list: ${envelope.type}, asked for ${types}`);
      listed.set(envelope.id, envelope);
    }
    cursor = page.nextCursor;
  } while (cursor && !ours.every((envelope) => listed.has(envelope.id)));
  for (const envelope of ours) {
    expectEqual(listed.get(envelope.id), envelope, `events list: ${envelope.id}`);
  }

  // 7. The send's timeline: the same envelopes, newest first.
  const timeline = await ok("timeline", "GET", `/api/v1/sends/${first.sendId}`);
  expectMembers(timeline, ["send", "messages", "events", "nextCursor"], "timeline");
  expectEqual(timeline.send.status, "sent", "timeline: the send's status");
  check(Array.isArray(timeline.messages), "timeline: messages is not a list");
  for (const envelope of timeline.events) {
    checkEnvelope(envelope, "timeline");
    expectEqual(envelope.data.sendId, first.sendId, `timeline: ${envelope.id}'s sendId`);
  }
  for (const envelope of ours) {
    const shown = timeline.events.find((other) => other.id === envelope.id);
    expectEqual(shown, envelope, `timeline: ${envelope.id}`);
  }
  const created = timeline.events.map((envelope) => envelope.created);
  expectEqual(created, [...created].sort().reverse(), "timeline: created, newest first");

  // 8. Metrics of the last 24 hours.
  const metrics = await ok("metrics", "GET", "/api/v1/metrics?window=24h");
  expectMembers(metrics, ["window", "scanned", "metrics"], "metrics");
  const { window, scanned } = metrics;
  expectEqual(window.preset, "24h", "metrics: window.preset");
  check(Date.parse(window.since) < Date.parse(window.until), `metrics: ${JSON.stringify(window)}`);
  check(Number.isInteger(scanned.sends), `metrics: scanned.sends ${scanned.sends}`);
  const limit = scanned.sendScanLimit;
  check(limit === null || Number.isInteger(limit), `metrics: scanned.sendScanLimit ${limit}`);
  expectMembers(metrics.metrics, METRICS, "metrics.metrics");
  for (const name of METRICS) {
    const value = metrics.metrics[name];
    const count = name.startsWith("total") || name.startsWith("unique");
    check(count ? Number.isInteger(value) : typeof value === "number", `metrics: ${name} ${value}`);
    check(value >= 0, `metrics: ${name} ${value}`);
  }
  check(metrics.metrics.totalSent >= 1, `metrics: totalSent ${metrics.metrics.totalSent}`);

  // 9. An error is a JSON body a client can read (here: no `content`, and a bad `to`).
  const bad = await call("POST", "/api/v1/emails/send", {
    body: { to: "not an address", subject: "Hello" },
  });
  expectEqual(bad.status, 400, "error: status");
  check(bad.type.includes("application/json"), `error: content type ${bad.type}, not JSON`);
  expectMembers(bad.json, PROBLEM, "error");
  expectEqual([bad.json.status, bad.json.code], [400, "validation_error"], "error: status, code");
  expectMembers(bad.json.details, ["to", "content"], "error: details");
  const requestId = bad.headers.get("x-request-id");
  expectEqual(bad.json.requestId, requestId, "error: requestId (the X-Request-Id header)");
  expectEqual(bad.headers.get("fluxomail-request-id"), requestId, "error: Fluxomail-Request-Id");

  // 10. Reconnect as an EventSource does, with the last id received: a send made while away
  //     arrives, and nothing received before comes again.
  const away = await send("Hello again");
  const resumed = await openStream(minted.token, { headers: { "Last-Event-ID": sent.id } });
  const caughtUp = await resumed.until(isSentEventOf(away.sendId), `email.sent of ${away.sendId}`);
  resumed.close();
  const repeated = caughtUp.filter((envelope) => streamed.some((old) => old.id === envelope.id));
  expectEqual(repeated, [], `stream: after Last-Event-ID ${sent.id}, events again`);

  console.log(
    JSON.stringify({
      ok: true,
      sendId: first.sendId,
      events: ours.map((envelope) => envelope.id),
      listed: listed.size,
      timeline: timeline.events.length,
      totalSent: metrics.metrics.totalSent,
      error: bad.json.code,
      resumed: { sendId: away.sendId, events: caughtUp.length, repeated: repeated.length },
    }),
  );
}

try {
  await main();
} catch (error) {
  // A Mismatch names the answer that differs; anything else (the server unreachable, a body
  // that is not JSON) is shown with its cause.
  const cause = error.cause ? ` (${error.cause.message ?? error.cause})` : "";
  console.error(`follow.mjs: ${error.message}${cause}`);
  process.exit(1);
}
