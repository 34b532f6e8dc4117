// Issue #22 end to end, against the real runtime: one published message used to silence a room's
// webhooks for WEBHOOK_MAX_AGE_SECONDS. The receiver here parses bodies the way strict parsers do
// (.NET's depth limit of 64 for the whole document, serde_json's and .NET's refusal of lone
// surrogate escapes, numbers that must fit a double) and answers 400 to what it cannot read, as
// a backend in Python, Go, .NET, Java or Rust would; it also refuses, for a reason of its own, any
// event whose data says {"refuse":true}. The room must refuse JSON outside the rules at the door
// (the publisher gets the error), and an event the receiver refuses anyway must be set aside so
// that the room's later events still arrive, in order.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { ALL_RIGHTS, api, Client, roomName, startEdge, token, until } from "../harness.mjs";

/** The strictest mainstream default depth for a whole document (System.Text.Json, Newtonsoft). */
const RECEIVER_MAX_DEPTH = 64;

/**
 * Why a strict parser refuses `text`, or null: nesting deeper than RECEIVER_MAX_DEPTH, a lone
 * surrogate escape, a number no double holds. Scans the text itself (JSON.parse would take all
 * three), without recursion.
 */
function strictRefusal(text) {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  let pendingHigh = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (pendingHigh && !(c === "\\" && /^u[dD][c-fC-F]/.test(text.slice(i + 1, i + 4)))) return "lone surrogate";
      pendingHigh = false;
      if (c === "\\") {
        if (text[i + 1] === "u") {
          const unit = parseInt(text.slice(i + 2, i + 6), 16);
          if (unit >= 0xdc00 && unit <= 0xdfff) return "lone surrogate";
          if (unit >= 0xd800 && unit <= 0xdbff) {
            const next = parseInt(text.slice(i + 8, i + 12), 16);
            if (text.slice(i + 6, i + 8) !== "\\u" || !(next >= 0xdc00 && next <= 0xdfff)) return "lone surrogate";
            i += 11;
            continue;
          }
          i += 5;
        } else {
          i += 1;
        }
      } else if (c === '"') {
        inString = false;
      }
    } else if (c === '"') {
      inString = true;
    } else if (c === "[" || c === "{") {
      deepest = Math.max(deepest, ++depth);
    } else if (c === "]" || c === "}") {
      depth--;
    }
  }
  if (deepest > RECEIVER_MAX_DEPTH) return `nested ${deepest} deep`;
  const numbers = text.replace(/"(?:[^"\\]|\\.)*"/g, '""').match(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g) ?? [];
  if (numbers.some((n) => !Number.isFinite(Number(n)))) return "number out of range";
  return null;
}

/** Every POST: its events (when it could read them) and the status it answered. */
const requests = [];
let receiver;
let edge;

before(async () => {
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const refusal = strictRefusal(body);
      const events = refusal ? [] : JSON.parse(body).events;
      const status = refusal || events.some((e) => e.data?.refuse === true) ? 400 : 204;
      requests.push({ status, refusal, events, body, at: Date.now() });
      res.writeHead(status).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  edge = await startEdge({
    vars: {
      WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks`,
      WEBHOOK_SECRET: `whsec_${randomBytes(24).toString("base64")}`,
      WEBHOOK_EVENTS: "message.published,presence.joined,presence.left,room.occupied,room.vacated",
      WEBHOOK_TIMEOUT_MS: 3000,
      PRESENCE_GRACE_MS: 300,
    },
  });
});
after(async () => {
  await edge?.stop();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve()));
});

const delivered = (room) =>
  requests
    .filter((r) => r.status < 300)
    .flatMap((r) => r.events)
    .filter((e) => e.room === room);
const refusedBodies = (room) => requests.filter((r) => r.status === 400 && r.body.includes(`"room":${JSON.stringify(room)}`));
const stats = async (room) => (await api(edge, "GET", `/rooms/${room}/stats`)).json.webhook;
const nested = (n, inner = "0") => "[".repeat(n) + inner + "]".repeat(n);

test("JSON a strict parser refuses is refused at publish, and the room's later events reach a depth-limited receiver", async () => {
  const room = roomName("json");
  const alice = await Client.connect(edge, room, { cid: "a1", user: "alice" });
  // The finding's payload: 10,001 levels in 20 KB; then the medium ones.
  const refusals = [
    ["deep", nested(10_001), /nested deeper than 32/],
    ["deep-33", nested(33), /nested deeper than 32/],
    ["surrogate", '{"text":"\\ud800"}', /lone surrogate/],
    ["surrogate-key", '{"\\udc00":1}', /lone surrogate/],
    ["huge", "[1e400]", /range of a double/],
  ];
  for (const [id, data, rule] of refusals) {
    alice.raw(`{"type":"publish","id":"${id}","data":${data}}`);
    const e = await alice.next((f) => f.id === id && (f.type === "error" || f.type === "ack"));
    assert.equal(e.type, "error", `${id} was accepted: ${JSON.stringify(e)}`);
    assert.equal(e.code, "bad_frame", id);
    assert.match(e.message, /^field "data" is refused: JSON /, id);
    assert.match(e.message, rule, id);
  }
  alice.raw(`{"type":"presence","id":"meta","meta":{"deep":${nested(40)}}}`);
  const meta = await alice.next((f) => f.id === "meta");
  assert.deepEqual([meta.type, meta.code], ["error", "bad_frame"]);
  // HTTP: the whole body is refused with a JSON error
  for (const data of [nested(10_001), '"\\ud800"', "1e400"]) {
    const res = await api(edge, "POST", `/rooms/${room}/messages`, `[{"data":1,"id":"ok"},{"data":${data}}]`);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error.code, "bad_request");
    assert.match(res.json.error.message, /JSON /);
  }
  // a token whose meta breaks a rule is refused at the edge
  let deepMeta = { v: 1 };
  for (let i = 0; i < 40; i++) deepMeta = { n: deepMeta };
  const bad = token("mallory", { [room]: ALL_RIGHTS }, { meta: deepMeta });
  const byToken = await api(edge, "POST", `/rooms/${room}/messages`, { data: 1 }, { key: bad });
  assert.equal(byToken.status, 401, byToken.text);
  assert.match(byToken.json.error.message, /nested deeper than 32/);
  // nothing was stored; the room's next events reach the receiver at once
  assert.equal((await api(edge, "GET", `/rooms/${room}/history`)).json.messages.length, 0);
  const within = nested(32, '"\\ud83d\\ude00"');
  assert.equal((await alice.publish("later", JSON.parse(within))).type, "ack");
  const ackedAt = Date.now();
  await until(() => delivered(room).some((e) => e.messageId === "later"), { what: "the later message's event" });
  const carried = requests.find((r) => r.events.some((e) => e.room === room && e.messageId === "later"));
  assert.ok(carried.at - ackedAt < 5000, `it arrived ${carried.at - ackedAt} ms after its ack`);
  assert.deepEqual(
    delivered(room).map((e) => e.type),
    ["room.occupied", "presence.joined", "message.published"],
  );
  assert.deepEqual(delivered(room)[2].data, JSON.parse(within), "32 levels in a 35-deep body: the receiver read it");
  assert.deepEqual(refusedBodies(room), [], "the receiver never had to refuse a body of this room");
  const s = await stats(room);
  assert.deepEqual([s.pending, s.deadLetters, s.failures], [0, 0, 0]);
  await alice.close();
});

test("an event the receiver refuses for its own reasons is set aside with its status; the others arrive once, in order", async () => {
  const room = roomName("json-refused");
  const items = Array.from({ length: 20 }, (_, i) => ({ id: `m${i + 1}`, data: i === 6 ? { refuse: true } : { n: i + 1 } }));
  const published = await api(edge, "POST", `/rooms/${room}/messages`, items);
  assert.equal(published.status, 200, published.text);
  const later = await api(edge, "POST", `/rooms/${room}/messages`, { id: "after", data: { n: 21 } });
  assert.equal(later.status, 200);
  await until(() => delivered(room).some((e) => e.messageId === "after"), { what: "the events after the refused one", timeoutMs: 15_000 });
  await until(async () => (await stats(room)).pending === 0, { what: "nothing pending" });
  const ids = delivered(room).map((e) => e.messageId);
  assert.deepEqual(ids, [...items.map((i) => i.id).filter((id) => id !== "m7"), "after"], "once each, in seq order");
  assert.ok(refusedBodies(room).length >= 2, "the refused batch was split");
  assert.ok(refusedBodies(room).length <= 8, `${refusedBodies(room).length} refused POSTs`);
  const s = await stats(room);
  assert.deepEqual([s.pending, s.deadLetters, s.refused, s.failures], [0, 1, 1, 0]);
  assert.equal(s.lastRefused.status, 400);
  const refusedEvent = refusedBodies(room).at(-1);
  assert.match(refusedEvent.body, new RegExp(`"id":"${s.lastRefused.id}"`), "the dead letter is the event the receiver refused");
  assert.match(refusedEvent.body, /"messageId":"m7"/);
  // re-queued, it is refused again and set aside again; nothing else is held up
  assert.deepEqual((await api(edge, "POST", `/rooms/${room}/webhooks/requeue`)).json, { requeued: 1 });
  assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { id: "last", data: { n: 22 } })).status, 200);
  await until(() => delivered(room).some((e) => e.messageId === "last"), { what: "the message after the re-queue" });
  await until(
    async () => {
      const t = await stats(room);
      return t.pending === 0 && t.deadLetters === 1 && t;
    },
    { what: "set aside again" },
  );
});
