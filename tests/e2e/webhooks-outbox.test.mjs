// Issue #22's outbox bound, end to end against the real runtime: a room whose webhook receiver
// is down holds at most WEBHOOK_OUTBOX_MAX_EVENTS events. Publishing then answers with the
// documented refusal (a `backpressure` error frame, HTTP 507 with Retry-After) and nothing is
// stored that the outbox could not hold; presence keeps being recorded up to twice the bound,
// then a newcomer is closed with 4029 (retryable); the receiver's 503 Retry-After is honoured.
// When the receiver comes back, everything drains, once and in order, and publishing goes on.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { api, apiKey, Client, roomName, startEdge, until } from "../harness.mjs";
import { checkAnswer, schemaCompiler } from "../openapi.mjs";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const MAX_EVENTS = 20;
const RETRY_AFTER_SECONDS = 2;

/** Every POST: when, what status it got, and its events. */
const posts = [];
let up = false;
let receiver;
let edge;

before(async () => {
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const events = JSON.parse(Buffer.concat(chunks).toString("utf8")).events;
      posts.push({ at: Date.now(), status: up ? 204 : 503, events });
      if (up) res.writeHead(204).end();
      else res.writeHead(503, { "retry-after": String(RETRY_AFTER_SECONDS) }).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  edge = await startEdge({
    vars: {
      WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks`,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_EVENTS: "message.published,presence.joined,presence.left,room.occupied,room.vacated",
      WEBHOOK_OUTBOX_MAX_EVENTS: MAX_EVENTS,
      WEBHOOK_TIMEOUT_MS: 3000,
      PRESENCE_GRACE_MS: 300,
    },
  });
});
after(async () => {
  await edge?.stop();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve()));
});

const stats = async (room) => (await api(edge, "GET", `/rooms/${room}/stats`)).json.webhook;

/** The first arrival of every event of `room` the receiver acknowledged, in arrival order. */
function delivered(room) {
  const seen = new Set();
  const out = [];
  for (const post of posts.filter((p) => p.status === 204)) {
    for (const e of post.events) {
      if (e.room !== room || seen.has(e.id)) continue;
      seen.add(e.id);
      out.push(e);
    }
  }
  return out;
}

test("a receiver that is down: publishing is refused at the bound and nothing is stored; back, everything drains in order", async () => {
  const room = roomName("outbox");
  const alice = await Client.connect(edge, room, { cid: "a1", user: "alice" }); // room.occupied, presence.joined
  // Publish until the outbox holds its bound: 18 messages fit beside the 2 presence events.
  const acked = [];
  let refusal;
  for (let i = 1; i <= MAX_EVENTS + 5 && !refusal; i++) {
    const answer = await alice.publish(`p${i}`, { i });
    if (answer.type === "ack") acked.push(answer.seq);
    else refusal = answer;
  }
  assert.deepEqual(
    acked,
    Array.from({ length: MAX_EVENTS - 2 }, (_, i) => i + 1),
    "18 messages fit beside 2 presence events",
  );
  assert.equal(refusal.code, "backpressure", JSON.stringify(refusal));
  assert.equal(refusal.id, `p${MAX_EVENTS - 1}`, "the error names the refused publish");
  assert.match(refusal.message, /^the room's webhook backlog is full; retry after \d+ ms$/);
  // A retry of a stored message needs no room: it is acknowledged as a duplicate.
  assert.deepEqual(await alice.publish("p3", { i: 3 }), { type: "ack", id: "p3", seq: 3, duplicate: true });
  // HTTP: 507, code backpressure, a Retry-After, all as docs/openapi.json describes it.
  const path = `/rooms/${room}/messages`;
  const res = await fetch(`${edge.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey()}`, "content-type": "application/json" },
    body: JSON.stringify([{ data: "h1", id: "h1" }, { data: "h2" }]),
  });
  const text = await res.text();
  assert.equal(res.status, 507, text);
  assert.equal(JSON.parse(text).error.code, "backpressure");
  assert.ok(Number(res.headers.get("retry-after")) >= 1, `Retry-After: ${res.headers.get("retry-after")}`);
  const checked = checkAnswer({ method: "POST", path, status: res.status, headers: res.headers, text }, schemaCompiler({ closed: true }));
  assert.deepEqual(checked.problems, [], "the 507 is what docs/openapi.json describes");
  // Nothing stored that the outbox could not hold.
  const history = (await api(edge, "GET", `/rooms/${room}/history?since=0&limit=100`)).json;
  assert.deepEqual(
    history.messages.map((m) => [m.seq, m.id]),
    acked.map((seq) => [seq, `p${seq}`]),
  );
  let s = await stats(room);
  assert.deepEqual([s.pending, s.full, s.deadLetters], [MAX_EVENTS, true, 0]);
  assert.ok(s.backpressure >= 2, `backpressure ${s.backpressure}`);
  assert.match(s.lastError, /^HTTP 503, Retry-After 2 s$/);

  // Presence is recorded past the messages' bound, up to twice it: 20 newcomers' joins fit, the
  // 21st is closed with 4029 and the reason; a member already present still gets in.
  const others = [];
  let closed;
  for (let i = 0; i < MAX_EVENTS + 2 && !closed; i++) {
    const c = await Client.connect(edge, room, { cid: `n${i}`, user: `newcomer${i}` }, { welcome: false });
    const outcome = await Promise.race([c.next((f) => f.type === "welcome").then(() => null), c.closed]);
    if (outcome) closed = { i, ...outcome };
    else others.push(c);
  }
  // the reason names how long to wait (the outbox's next attempt, within its 2 s Retry-After)
  const wait = Number(/; retryAfterMs=(\d+)$/.exec(closed.reason)?.[1]);
  assert.ok(wait > 0 && wait <= 2_000, closed.reason);
  assert.deepEqual(closed, { i: MAX_EVENTS, code: 4029, reason: `webhook backlog full; retry later; retryAfterMs=${wait}` });
  const alice2 = await Client.connect(edge, room, { cid: "a2", user: "alice" });
  s = await stats(room);
  assert.equal(s.pending, 2 * MAX_EVENTS, "twice the bound");

  // The receiver's Retry-After was honoured: attempts at least 2 s apart (the backoff alone
  // would have made the second one after 1 s).
  await until(() => posts.filter((p) => p.events.some((e) => e.room === room)).length >= 2, { what: "a second attempt" });
  const attempts = posts.filter((p) => p.events.some((e) => e.room === room));
  assert.ok(attempts[1].at - attempts[0].at >= RETRY_AFTER_SECONDS * 1000 - 100, `${attempts[1].at - attempts[0].at} ms apart`);

  // The receiver comes back: everything drains, once each, in order.
  up = true;
  for (const c of [alice2, ...others]) await c.close();
  s = await until(
    async () => {
      const t = await stats(room);
      return t.pending === 0 && t;
    },
    { what: "the outbox to drain", timeoutMs: 60_000, intervalMs: 200 },
  );
  assert.deepEqual([s.full, s.deadLetters, s.failures], [false, 0, 0]);
  const events = delivered(room);
  assert.deepEqual(
    events.filter((e) => e.type === "message.published").map((e) => [e.seq, e.messageId]),
    acked.map((seq) => [seq, `p${seq}`]),
    "every stored message, once, in order; no event for a refused publish",
  );
  const joins = events.filter((e) => e.type === "presence.joined").map((e) => e.user);
  assert.deepEqual(joins, ["alice", ...Array.from({ length: MAX_EVENTS }, (_, i) => `newcomer${i}`)]);
  assert.ok(
    events.findIndex((e) => e.type === "presence.joined" && e.user === "newcomer0")
      > events.findIndex((e) => e.type === "message.published" && e.seq === 18),
    "in the order they happened",
  );

  // Publishing goes on: the refused publish, retried with its id, is stored now; so is HTTP's.
  assert.deepEqual(await alice.publish(refusal.id, { i: MAX_EVENTS - 1 }), { type: "ack", id: refusal.id, seq: MAX_EVENTS - 1 });
  const http = await api(edge, "POST", path, [{ data: "h1", id: "h1" }, { data: "h2" }]);
  assert.equal(http.status, 200, http.text);
  await alice.close();
  await until(() => delivered(room).some((e) => e.type === "room.vacated"), { what: "the last events", timeoutMs: 20_000 });
  const last = delivered(room)
    .filter((e) => e.type === "message.published")
    .map((e) => e.seq);
  assert.deepEqual(
    last,
    Array.from({ length: MAX_EVENTS + 1 }, (_, i) => i + 1),
  );
});
