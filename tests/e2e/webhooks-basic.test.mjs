// Webhooks (issue #16), end to end against the real runtime with a receiver on 127.0.0.1 in this
// process: the events of a WS publish, an HTTP publish, joins, leaves and occupancy, signed per
// Standard Webhooks (checked here with node:crypto, not with the project's code); a failing
// receiver gets the same events again with the same ids; old events become dead letters that
// the API re-queues; deleting a room's history starts a new epoch that a resuming client is told
// about. The chaos suite covers crashes and a receiver failing at random.
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { Webhook } from "standardwebhooks";
import { createClient, verifyWebhook } from "../../sdk/server/index.mjs";
import { ALL_RIGHTS, api, apiKey, Client, roomName, startEdge, tempDir, token, until } from "../harness.mjs";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const KEY = Buffer.from(SECRET.slice("whsec_".length), "base64");
const GRACE_MS = 300;
const MAX_AGE_SECONDS = 4;

/** Every POST the receiver got: headers, body, parsed events, the status it answered. */
const requests = [];
/** Rooms whose POSTs the receiver answers with 500 for now. */
const failing = new Set();
/** Rooms whose POSTs the receiver does not answer for now; the POSTs it holds. */
const holding = new Set();
const held = [];
let receiver;
let edge;
let vars;

before(async () => {
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let events = [];
      try {
        events = JSON.parse(body).events;
      } catch {
        /* recorded as is; the test fails on it */
      }
      if (events.some((e) => holding.has(e.room))) {
        const h = { rooms: new Set(events.map((e) => e.room)), closed: false, res };
        res.on("close", () => {
          h.closed = true;
        });
        held.push(h);
        return;
      }
      const status = events.some((e) => failing.has(e.room)) ? 500 : 204;
      requests.push({ method: req.method, headers: req.headers, body, events, status, at: Date.now() });
      res.writeHead(status).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${receiver.address().port}/hooks`;
  vars = {
    WEBHOOK_URL: url,
    // A secret reaches the Worker like a var; the harness passes vars on the command line.
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_EVENTS: "message.published,presence.joined,presence.left,room.occupied,room.vacated",
    WEBHOOK_MAX_AGE_SECONDS: MAX_AGE_SECONDS,
    WEBHOOK_TIMEOUT_MS: 3000,
    PRESENCE_GRACE_MS: GRACE_MS,
  };
  edge = await startEdge({ vars });
});
after(async () => {
  await edge?.stop();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve()));
});

/** The events of `room` the receiver acknowledged, in the order it got them. */
const delivered = (room) =>
  requests
    .filter((r) => r.status < 300)
    .flatMap((r) => r.events)
    .filter((e) => e.room === room);
const attempted = (room) => requests.flatMap((r) => r.events).filter((e) => e.room === room);
const stats = async (room) => (await api(edge, "GET", `/rooms/${room}/stats`)).json.webhook;

/** Standard Webhooks verification, written out with node:crypto. */
function verify(request) {
  const id = request.headers["webhook-id"];
  const timestamp = request.headers["webhook-timestamp"];
  const expected = createHmac("sha256", KEY).update(`${id}.${timestamp}.${request.body}`).digest("base64");
  assert.equal(request.headers["webhook-signature"], `v1,${expected}`, "signature");
  assert.ok(Math.abs(Date.now() / 1000 - Number(timestamp)) < 300, "timestamp within 5 minutes");
  const tampered = createHmac("sha256", KEY).update(`${id}.${timestamp}.${request.body} `).digest("base64");
  assert.notEqual(request.headers["webhook-signature"], `v1,${tampered}`);
  assert.equal(request.method, "POST");
  assert.equal(request.headers["content-type"], "application/json");
  assert.equal(request.headers["user-agent"], "roomcast-webhooks/1");
  assert.equal(id, `batch_${request.events[0].id}_${request.events.length}`);
  assert.ok(!request.body.includes("\n"));
}

test("a WS publish, an HTTP publish, joins, leaves and occupancy arrive signed, in order", async () => {
  const room = roomName("hooks");
  const alice = await Client.connect(edge, room, { cid: "a1", user: "alice", meta: JSON.stringify({ device: "phone" }) });
  const bob = await Client.connect(edge, room, { cid: "b1", user: "bob" });
  assert.equal((await alice.publish("m1", { text: "hi\nthere" })).type, "ack");
  const http = await api(edge, "POST", `/rooms/${room}/messages`, { data: { n: 1 }, id: "h1" });
  assert.equal(http.status, 200);
  const ackedAt = Date.now();
  // Delivery starts at once (the alarm is set for now), not at the next heartbeat sweep (30 s).
  const carrying = await until(() => requests.find((r) => r.events.some((e) => e.room === room && e.messageId === "h1")), {
    what: "h1's event",
  });
  assert.ok(carrying.at - ackedAt < 3000, `h1's event arrived ${carrying.at - ackedAt} ms after its ack`);
  await alice.close();
  await bob.close();
  await until(() => delivered(room).some((e) => e.type === "room.vacated"), { what: "room.vacated", timeoutMs: 15_000 });
  const events = delivered(room);
  assert.deepEqual(
    events.map((e) => [e.type, e.user ?? ""]),
    [
      ["room.occupied", ""],
      ["presence.joined", "alice"],
      ["presence.joined", "bob"],
      ["message.published", "alice"],
      ["message.published", ":api"],
      ["presence.left", "alice"],
      ["presence.left", "bob"],
      ["room.vacated", ""],
    ],
  );
  const [occupied, joined, , ws, api_] = events;
  assert.deepEqual(Object.keys(occupied), ["id", "type", "room", "ts"]);
  assert.deepEqual(joined.meta, { device: "phone" });
  assert.deepEqual(Object.keys(ws), ["id", "type", "room", "ts", "epoch", "seq", "from", "user", "data", "messageId"]);
  assert.deepEqual([ws.epoch, ws.seq, ws.from, ws.data, ws.messageId], [alice.welcome.epoch, 1, "a1", { text: "hi\nthere" }, "m1"]);
  assert.deepEqual([api_.seq, api_.from, api_.user, api_.data, api_.messageId], [2, ":api", ":api", { n: 1 }, "h1"]);
  assert.deepEqual(events[5].meta, { device: "phone" }, "left carries the meta kept through the grace period");
  // Ids: evt_<key>_<row>, unique, rows growing in the order the events happened.
  const rows = events.map((e) => /^evt_([0-9a-f]{16})_(\d+)$/.exec(e.id));
  assert.ok(rows.every(Boolean), JSON.stringify(events.map((e) => e.id)));
  assert.equal(new Set(rows.map((m) => m[1])).size, 1, "one key per room");
  const numbers = rows.map((m) => Number(m[2]));
  assert.deepEqual(
    numbers,
    [...numbers].sort((a, b) => a - b),
  );
  assert.equal(new Set(numbers).size, numbers.length);
  for (const r of requests.filter((r) => r.events.some((e) => e.room === room))) verify(r);
  const s = await stats(room);
  assert.deepEqual([s.enabled, s.pending, s.failures, s.lastError, s.deadLetters], [true, 0, 0, null, 0]);
  assert.ok(s.delivered >= 1);
});

test("a receiver answering 500 gets the same events again, with the same ids, once it answers 2xx", async () => {
  const room = roomName("hooks-retry");
  failing.add(room);
  const c = await Client.connect(edge, room, { cid: "c1", user: "carol" });
  const { events: first } = await until(() => requests.find((r) => r.events.some((e) => e.room === room)), { what: "a first attempt" });
  const failed = await until(
    async () => {
      const s = await stats(room);
      return s.failures >= 1 && s;
    },
    { what: "a failure in stats" },
  );
  assert.equal(failed.lastError, "HTTP 500");
  assert.ok(failed.pending >= 2);
  assert.ok(!JSON.stringify(failed).includes("127.0.0.1"), "stats never show the URL");
  failing.delete(room);
  await until(() => delivered(room).length >= first.length, { what: "the retry", timeoutMs: 15_000 });
  assert.deepEqual(delivered(room).slice(0, first.length), first, "the same events, ids and all");
  const s = await stats(room);
  assert.deepEqual([s.failures, s.lastError], [0, null]);
  await c.close();
});

test("events older than WEBHOOK_MAX_AGE_SECONDS become dead letters; requeue delivers them with their ids", async () => {
  const room = roomName("hooks-dead");
  failing.add(room);
  const c = await Client.connect(edge, room, { cid: "d1", user: "dave" });
  await c.close();
  // occupied, joined, left, vacated: all four end up dead while the receiver fails.
  const dead = await until(
    async () => {
      const s = await stats(room);
      return s.deadLetters === 4 && s.pending === 0 && s;
    },
    { what: "4 dead letters", timeoutMs: 40_000, intervalMs: 250 },
  );
  assert.equal(dead.enabled, true);
  const tried = attempted(room);
  assert.equal(delivered(room).length, 0);
  failing.delete(room);
  const requeue = await api(edge, "POST", `/rooms/${room}/webhooks/requeue`);
  assert.deepEqual([requeue.status, requeue.json], [200, { requeued: 4 }]);
  await until(() => delivered(room).length === 4, { what: "the re-queued events" });
  const ids = delivered(room).map((e) => e.id);
  assert.deepEqual(ids, [...new Set(tried.map((e) => e.id))], "the same ids, in order");
  const s = await stats(room);
  assert.deepEqual([s.deadLetters, s.pending], [0, 0]);
  // The API key only.
  const user = token("dave", { [room]: ALL_RIGHTS });
  const refused = await api(edge, "POST", `/rooms/${room}/webhooks/requeue`, undefined, { key: user });
  assert.equal(refused.status, 403);
});

test("DELETE history starts a new epoch: sockets close with 4013 and a resuming client is told", async () => {
  const room = roomName("hooks-reset");
  const c = await Client.connect(edge, room, { cid: "e1", user: "erin" });
  await c.publish("p1", 1);
  await c.publish("p2", 2);
  const old = c.welcome.epoch;
  const user = token("erin", { [room]: ALL_RIGHTS });
  assert.equal((await api(edge, "DELETE", `/rooms/${room}/history`, undefined, { key: user })).status, 403, "the API key only");
  const reset = await api(edge, "DELETE", `/rooms/${room}/history`);
  assert.equal(reset.status, 200);
  assert.equal(reset.json.deleted, 2);
  assert.match(reset.json.epoch, /^[0-9a-f]{16}$/);
  assert.notEqual(reset.json.epoch, old);
  const closed = await c.closed;
  assert.deepEqual([closed.code, closed.reason], [4013, "room reset"]);
  const back = await Client.connect(edge, room, { cid: "e1", user: "erin", since: 2, epoch: old });
  assert.deepEqual([back.welcome.epoch, back.welcome.seq], [reset.json.epoch, 0]);
  assert.deepEqual(back.welcome.resume, { status: "not_recovered", reason: "epoch", since: 2 });
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual([history.json.epoch, history.json.messages], [reset.json.epoch, []]);
  assert.equal((await back.publish("p3", 3)).seq, 1, "seq starts again");
  await until(() => delivered(room).filter((e) => e.type === "message.published").length === 3, { what: "the messages' events" });
  const published = delivered(room).filter((e) => e.type === "message.published");
  assert.deepEqual(
    published.map((e) => [e.epoch, e.seq]),
    [
      [old, 1],
      [old, 2],
      [reset.json.epoch, 1],
    ],
    "events from before the reset are kept",
  );
  assert.ok(!delivered(room).some((e) => e.type === "presence.left"), "a reconnect within the grace period is no leave");
  await back.close();
});

test("the SDK reconnects after 4013 and reports the reset as a gap with reason epoch", async () => {
  if (typeof WebSocket === "undefined") throw new Error("run node with --experimental-websocket (Node 20) for the SDK's WebSocket");
  const { connect } = await import("../../sdk/dist/index.js");
  const room = roomName("hooks-sdk");
  const r = connect({
    url: edge.url,
    room,
    clientId: "s1",
    echo: true,
    minReconnectDelayMs: 100,
    maxReconnectDelayMs: 500,
    token: async () => token("sam", { [room]: ALL_RIGHTS }),
  });
  const statuses = [];
  const gaps = [];
  r.on("status", (s) => statuses.push(s));
  r.on("gap", (g) => gaps.push(g));
  try {
    await until(() => r.state === "open", { what: "open" });
    assert.equal(await r.publish({ n: 1 }), 1);
    assert.equal(await r.publish({ n: 2 }), 2);
    const reset = await api(edge, "DELETE", `/rooms/${room}/history`);
    assert.equal(reset.status, 200);
    await until(() => gaps.length > 0 && r.state === "open", { what: "a gap, then open again" });
    assert.deepEqual(gaps, [{ reason: "epoch", since: 2 }]);
    assert.ok(
      statuses.some((s) => s.state === "reconnecting" && s.code === 4013 && s.reason === "room reset"),
      JSON.stringify(statuses),
    );
    assert.equal(await r.publish({ n: 3 }), 1, "the new epoch starts at seq 1");
  } finally {
    r.close();
  }
});

test("a client leaving a hibernated room: members see it and presence.left follows its grace period, once", {
  timeout: 60_000,
}, async () => {
  const room = roomName("hooks-hib");
  const alice = await Client.connect(edge, room, { cid: "h1", user: "alice" }, { pingEveryMs: 500 });
  const bob = await Client.connect(edge, room, { cid: "h2", user: "bob" }, { pingEveryMs: 500 });
  const before = (await api(edge, "GET", `/rooms/${room}/stats`)).json;
  await until(() => delivered(room).length === 3, { what: "occupied and two joins" });
  // Idle but for pings, which the runtime answers: this waits out local workerd's idle timeout
  // (10 s), as tests/e2e/hibernation.test.mjs does; eviction is checked below.
  await new Promise((r) => setTimeout(r, 13_000));
  const closedAt = Date.now();
  await bob.close(); // the close event wakes the room
  const update = await alice.next((f) => f.type === "presence" && f.member.user === "bob" && f.member.connections === 0);
  assert.equal(update.event, "update", "bob is in his grace period");
  await alice.next((f) => f.type === "presence" && f.member.user === "bob" && f.event === "leave");
  await until(() => delivered(room).some((e) => e.type === "presence.left"), { what: "presence.left" });
  const after = (await api(edge, "GET", `/rooms/${room}/stats`)).json;
  assert.ok(after.countersSince > before.countersSince, "the room was evicted before bob left");
  const left = delivered(room).filter((e) => e.type === "presence.left");
  assert.deepEqual(
    left.map((e) => e.user),
    ["bob"],
  );
  assert.ok(left[0].ts - closedAt >= GRACE_MS - 50, `left ${left[0].ts - closedAt} ms after the close`);
  await alice.close();
  await until(() => delivered(room).some((e) => e.type === "room.vacated"), { what: "room.vacated" });
  assert.deepEqual(
    delivered(room).map((e) => `${e.type} ${e.user ?? ""}`.trim()),
    ["room.occupied", "presence.joined alice", "presence.joined bob", "presence.left bob", "presence.left alice", "room.vacated"],
  );
});

test("a crash takes every socket: a user back within the grace period is no leave and join, one who is not is left once", {
  timeout: 120_000,
}, async () => {
  const persistDir = tempDir("hooks-crash");
  const room = roomName("hooks-crash");
  let crashing = await startEdge({ persistDir, vars });
  try {
    await Client.connect(crashing, room, { cid: "k1", user: "alice" });
    await Client.connect(crashing, room, { cid: "k2", user: "bob" });
    await until(() => delivered(room).length === 3, { what: "occupied and two joins" });
  } finally {
    await crashing.stop("SIGKILL"); // no close event reaches the room
  }
  crashing = await startEdge({ persistDir, vars });
  try {
    // Alice's reconnect wakes the room; bob never comes back.
    const alice = await Client.connect(crashing, room, { cid: "k1", user: "alice" });
    await until(() => delivered(room).some((e) => e.type === "presence.left"), { what: "bob's leave" });
    await alice.close();
    await until(() => delivered(room).some((e) => e.type === "room.vacated"), { what: "room.vacated" });
    assert.deepEqual(
      delivered(room).map((e) => `${e.type} ${e.user ?? ""}`.trim()),
      ["room.occupied", "presence.joined alice", "presence.joined bob", "presence.left bob", "presence.left alice", "room.vacated"],
    );
  } finally {
    await crashing.stop();
  }
});

test("real deliveries verify with the standardwebhooks library and roomcast/server; a tampered body or an old timestamp fails", async () => {
  const room = roomName("hooks-verify");
  const c = await Client.connect(edge, room, { cid: "v1", user: "vera" });
  await c.publish("v-1", { text: "verify me" });
  const request = await until(
    () => requests.find((r) => r.status < 300 && r.events.some((e) => e.room === room && e.type === "message.published")),
    { what: "a delivery carrying the message" },
  );
  await c.close();
  const library = new Webhook(SECRET);
  assert.deepEqual(library.verify(request.body, request.headers), JSON.parse(request.body));
  assert.deepEqual((await verifyWebhook(request.body, request.headers, SECRET)).events, request.events);
  const tampered = request.body.replace("verify me", "verify mE");
  assert.throws(() => library.verify(tampered, request.headers), /signature/i);
  await assert.rejects(verifyWebhook(tampered, request.headers, SECRET), { name: "WebhookVerificationError" });
  // The same signed request, checked ten minutes after it was sent: too old for both.
  const later = Date.now() + 10 * 60_000;
  const realNow = Date.now;
  Date.now = () => later;
  try {
    assert.throws(() => library.verify(request.body, request.headers), /timestamp/i);
  } finally {
    Date.now = realNow;
  }
  await assert.rejects(verifyWebhook(request.body, request.headers, SECRET, { now: later }), { name: "WebhookVerificationError" });
  // Another key fails too.
  assert.throws(() => new Webhook(`whsec_${randomBytes(24).toString("base64")}`).verify(request.body, request.headers));
});

test("roomcast/server's requeueWebhooks and deleteHistory against the edge", async () => {
  const rc = createClient({ url: edge.url, apiKey: apiKey() });
  const room = roomName("hooks-server");
  failing.add(room);
  const c = await Client.connect(edge, room, { cid: "s1", user: "sam" });
  await c.publish("s-1", 1);
  await c.close();
  await until(
    async () => {
      const s = (await rc.stats(room)).webhook;
      return s.deadLetters >= 5 && s.pending === 0;
    },
    { what: "dead letters in stats().webhook", timeoutMs: 40_000, intervalMs: 250 },
  );
  failing.delete(room);
  const { requeued } = await rc.requeueWebhooks(room);
  assert.equal(requeued, 5, "occupied, joined, published, left, vacated");
  await until(() => delivered(room).length === 5, { what: "the re-queued events" });
  assert.equal((await rc.stats(room)).webhook.deadLetters, 0);

  const reset = await rc.deleteHistory(room);
  assert.equal(reset.deleted, 1);
  assert.match(reset.epoch, /^[0-9a-f]{16}$/);
  const page = await rc.history(room, { since: 0 });
  assert.deepEqual([page.epoch, page.messages], [reset.epoch, []]);
  assert.equal((await rc.publish(room, { n: 2 })).seq, 1, "seq starts again in the new epoch");
  const asUser = createClient({ url: edge.url, apiKey: token("sam", { [room]: ALL_RIGHTS }) });
  await assert.rejects(asUser.deleteHistory(room), { status: 403 });
  await assert.rejects(asUser.requeueWebhooks(room), { status: 403 });
});

test("a room started by its alarm after a restart (no request names it) still delivers, and records what it does", {
  timeout: 120_000,
}, async () => {
  const persistDir = tempDir("hooks-alarm");
  let own = await startEdge({ persistDir, vars });
  const port = own.port;
  const room = roomName("hooks-alarm");
  failing.add(room);
  try {
    const c = await Client.connect(own, room, { cid: "w1", user: "walt" });
    assert.equal((await api(own, "POST", `/rooms/${room}/messages`, { data: 1, id: "one" })).status, 200);
    // A failed POST leaves the room a retry, which is its alarm.
    await until(async () => (await api(own, "GET", `/rooms/${room}/stats`)).json.webhook.failures >= 1, { what: "a failed delivery" });
    await own.stop("SIGKILL");
    c.ws.terminate();
    failing.delete(room);
    own = await startEdge({ persistDir, vars, port });
    // Nothing calls the room now: only its alarm can start it, and that event carries no name.
    await until(() => delivered(room).some((e) => e.messageId === "one"), {
      what: "a delivery by the alarm-started room",
      timeoutMs: 30_000,
    });
    // The same instance records the events of what it does next.
    assert.equal((await api(own, "POST", `/rooms/${room}/messages`, { data: 2, id: "two" })).status, 200);
    await until(() => delivered(room).some((e) => e.messageId === "two"), { what: "the event of a publish to that instance" });
    const published = delivered(room)
      .filter((e) => e.type === "message.published")
      .map((e) => e.seq);
    assert.deepEqual([...new Set(published)], [1, 2]);
  } finally {
    failing.delete(room);
    await own.stop();
  }
});

test("a webhook POST in flight does not hold back the room's other timers: a grace period ends on time", async () => {
  const room = roomName("hooks-held");
  holding.add(room);
  try {
    const a = await Client.connect(edge, room, { cid: "h1", user: "hana" });
    const b = await Client.connect(edge, room, { cid: "h2", user: "hugo" });
    const post = await until(() => held.find((h) => h.rooms.has(room)), { what: "a POST the receiver holds" });
    await b.close();
    // The grace period (GRACE_MS) ends, and hana hears hugo left, while that POST still waits for
    // its answer (WEBHOOK_TIMEOUT_MS); a room that waited for the POST in its alarm handler ended
    // the grace period only after the POST timed out.
    await a.next((f) => f.type === "presence" && f.event === "leave" && f.member.user === "hugo", 20_000);
    assert.equal(post.closed, false, "the leave came while the POST was still in flight");
    holding.delete(room);
    for (const h of held.filter((h) => h.rooms.has(room) && !h.closed)) h.res.writeHead(503).end();
    await a.close();
    // Once answered, the room delivers every event of the room, in order.
    await until(() => delivered(room).some((e) => e.type === "room.vacated"), { what: "the room's events", timeoutMs: 20_000 });
    assert.deepEqual(
      delivered(room).map((e) => [e.type, e.user ?? ""]),
      [
        ["room.occupied", ""],
        ["presence.joined", "hana"],
        ["presence.joined", "hugo"],
        ["presence.left", "hugo"],
        ["presence.left", "hana"],
        ["room.vacated", ""],
      ],
    );
  } finally {
    holding.delete(room);
  }
});
