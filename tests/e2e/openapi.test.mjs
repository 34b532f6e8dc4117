// docs/openapi.json against the real edge (issue #24, "for clients written by others"): every
// endpoint of the HTTP API is called under wrangler dev, every status the document lists is
// provoked where a request from outside can provoke it, and every answer must be described by the
// document: its status for that operation, its content type, its headers and its body, with the
// document's schemas closed (a field the document does not name fails too). The last test checks
// that every answer the document lists was seen, or is on the short list of answers no request
// can provoke (EXCUSED, each with its reason). tests/unit/openapi.test.mjs checks the document on
// its own.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { mintToken } from "../../tools/token.mjs";
import { ALL_RIGHTS, apiKey, Client, roomName, startEdge, token } from "../harness.mjs";
import { checkAnswer, documentedAnswers, schemaCompiler } from "../openapi.mjs";

const ORIGIN = "https://app.example"; // the one origin the main edge allows
const PAGE_MAX_BYTES = 100;
const READ_BURST = 1_000; // a few small pages, then the reader is in debt
let edge; // default limits; ALLOWED_ORIGINS one origin; no upgrade limit
let tight; // small publish, read and page budgets; the upgrade limit on; no development tokens
before(async () => {
  [edge, tight] = await Promise.all([
    startEdge({ vars: { UPGRADE_LIMITER: "", ALLOWED_ORIGINS: ORIGIN } }),
    startEdge({
      vars: {
        ROOMCAST_DEV_TOKENS: "0",
        HTTP_RATE_MESSAGES_PER_SEC: 1,
        HTTP_RATE_MESSAGES_BURST: 1,
        PUBLISH_BATCH_MAX: 2,
        PUBLISH_BATCH_MAX_BYTES: 1024,
        READ_BYTES_PER_SEC: 1,
        READ_BYTES_BURST: READ_BURST,
        HISTORY_PAGE_MAX_BYTES: PAGE_MAX_BYTES,
      },
    }),
  ]);
});
after(async () => {
  await Promise.all([edge?.stop(), tight?.stop()]);
});

/** Answers the document lists that no request from outside can provoke, and why. */
const EXCUSED = new Map([
  ...[
    "POST /rooms/{room}/messages",
    "GET /rooms/{room}/history",
    "DELETE /rooms/{room}/history",
    "GET /rooms/{room}/presence",
    "GET /rooms/{room}/stats",
    "POST /rooms/{room}/kick",
    "POST /rooms/{room}/webhooks/requeue",
  ].map((op) => [`${op} 503`, "the room's storage failing (protocol/src/room/http.rs answer_tests covers the table)"]),
  ["GET /dev/token 401", "an edge without ROOMCAST_SECRET (protocol/src/api/dev_token.rs tests)"],
  ["DELETE /sessions/{user} 503", "the session object failing to answer (worker/src/edge.rs close_session)"],
  [
    "POST /rooms/{room}/messages 507",
    "a full webhook outbox: tests/e2e/webhooks-outbox.test.mjs provokes it and checks it against this document",
  ],
]);

const compiler = schemaCompiler({ closed: true });
/** Every answer checked, by `<operation> <status>`: the first request that got it. */
const seen = new Map();

/** Checks an answer against the document, records it, and asserts its status. */
function record(method, path, status, headers, text, expected) {
  const result = checkAnswer({ method, path, status, headers, text }, compiler);
  const what = `${method} ${path} → ${status}`;
  assert.deepEqual(result.problems, [], `${what} is not what docs/openapi.json describes: ${text?.slice(0, 300)}`);
  if (expected !== undefined) assert.equal(status, expected, `${what}, expected ${expected}: ${text?.slice(0, 300)}`);
  const key = `${result.key} ${status}`;
  if (!seen.has(key)) seen.set(key, what);
}

const KEY = () => `Bearer ${apiKey()}`;

/**
 * An HTTP call, its answer checked against the document. `auth`: the Authorization header (the
 * API key by default, `null` for none); `body`: a string or a value sent as JSON.
 */
async function call(on, method, path, expected, { auth = KEY(), headers = {}, body, init = {} } = {}) {
  const res = await fetch(`${on.url}${path}`, {
    method,
    headers: {
      ...(auth === null ? {} : { authorization: auth }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
  const text = await res.text();
  record(method, new URL(path, on.url).pathname, res.status, res.headers, text, expected);
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/**
 * A WebSocket upgrade, its answer checked against the document: resolves with `{ status, headers,
 * text }` for a refusal, or for a 101 with `{ status: 101, headers, first }`, `first` the first
 * frame (the welcome) or the close (`{ close, reason }`) that followed.
 */
function upgrade(on, path, expected, { protocols = ["roomcast.v1"], headers = {} } = {}) {
  const ws = new WebSocket(`${on.wsUrl}${path}`, protocols, { headers, closeTimeout: 500 });
  const pathname = new URL(path, on.url).pathname;
  return new Promise((resolve, reject) => {
    let opened;
    ws.once("upgrade", (res) => {
      try {
        record("GET", pathname, res.statusCode, res.headers, "", expected);
      } catch (e) {
        ws.terminate();
        reject(e);
      }
      opened = { status: res.statusCode, headers: res.headers };
    });
    ws.once("message", (data) => {
      ws.close();
      resolve({ ...opened, first: JSON.parse(data.toString().split("\n")[0]) });
    });
    ws.once("close", (code, reason) => resolve({ ...opened, first: { close: code, reason: reason.toString() } }));
    ws.once("unexpected-response", (_req, res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        try {
          record("GET", pathname, res.statusCode, res.headers, text, expected);
          resolve({ status: res.statusCode, headers: res.headers, text });
        } catch (e) {
          reject(e);
        }
      });
    });
    ws.once("error", (e) => {
      if (!ws.listenerCount("unexpected-response")) reject(e);
    });
  });
}

const bearer = (t) => `Bearer ${t}`;
const forged = (user, rooms) => mintToken({ secret: "not-the-deployment-secret", user, rooms });
const expired = (user, rooms) => token(user, rooms, { ttlSeconds: -3600 });
const BAD_ROOM = "chat%3Alobby"; // encodeURIComponent("chat:lobby"): room names go into paths verbatim

test("publish: one message, a retry, a batch, with the key or a token; and its refusals", async () => {
  const room = roomName("oa-publish");
  const path = `/rooms/${room}/messages`;
  const first = await call(edge, "POST", path, 200, { body: { data: { x: 1 }, id: "m1" } });
  assert.deepEqual(first.json, { seq: 1, id: "m1" });
  assert.deepEqual((await call(edge, "POST", path, 200, { body: { data: 2, id: "m1" } })).json, { seq: 1, id: "m1", duplicate: true });
  const batch = await call(edge, "POST", path, 200, { body: [{ data: 3 }, { data: null, id: "n" }, { data: 4, id: "n" }] });
  assert.deepEqual(batch.json, { messages: [{ seq: 2 }, { seq: 3, id: "n" }, { seq: 3, id: "n", duplicate: true }] });
  const publisher = token("svc", { [room]: ["publish"] });
  assert.equal((await call(edge, "POST", path, 200, { auth: bearer(publisher), body: { data: "from a token" } })).json.seq, 4);

  for (const body of ["{", "[]", '[[1,"id"]]', { data: 1, id: "" }, { data: 1, id: 5 }, { id: "no data" }, "null"]) {
    await call(edge, "POST", path, 400, { body });
  }
  await call(edge, "POST", `/rooms/${BAD_ROOM}/messages`, 400, { body: { data: 1 } });
  for (const auth of [
    null,
    "Bearer not-the-key",
    "Basic abc",
    bearer(forged("svc", { [room]: ALL_RIGHTS })),
    bearer(expired("svc", { [room]: ALL_RIGHTS })),
  ]) {
    await call(edge, "POST", path, 401, { auth, body: { data: 1 } });
  }
  await call(edge, "POST", path, 403, { auth: bearer(token("reader", { [room]: ["subscribe", "presence"] })), body: { data: 1 } });
  // A body without a Content-Length (chunked) is refused unread.
  const chunked = new Blob([JSON.stringify({ data: 1 })]).stream();
  await call(edge, "POST", path, 411, { headers: { "content-type": "application/json" }, init: { body: chunked, duplex: "half" } });
  await call(edge, "POST", path, 413, { body: { data: "x".repeat(70_000) } }); // over MAX_FRAME_BYTES
});

test("publish on a small budget: 413 for a batch or a body too large, 429 with Retry-After", async () => {
  const room = roomName("oa-budget");
  const path = `/rooms/${room}/messages`;
  // PUBLISH_BATCH_MAX_BYTES 1024: the batch's data together is over it…
  await call(tight, "POST", path, 413, { body: [{ data: "a".repeat(600) }, { data: "b".repeat(600) }] });
  // …and a Content-Length over 2 × 1024 + 2 × 192 is refused before the body is read.
  await call(tight, "POST", path, 413, { body: { data: "c".repeat(3_000) } });
  // One message a second, burst one batch (2): a burst of single publishes meets the rate.
  const statuses = [];
  for (let i = 0; i < 10 && !statuses.includes(429); i++) {
    const res = await call(tight, "POST", path, undefined, { body: { data: i } });
    statuses.push(res.status);
    if (res.status === 429) assert.match(res.headers.get("retry-after"), /^[1-9][0-9]*$/);
  }
  assert.ok(statuses.includes(429), `no 429 in ${statuses.join(", ")}`);
  assert.equal(statuses[0], 200);
});

test("history: pages forwards and backwards, CORS for allowed pages; and its refusals", async () => {
  const room = roomName("oa-history");
  await call(edge, "POST", `/rooms/${room}/messages`, 200, { body: [1, 2, 3].map((n) => ({ data: { n }, id: `h${n}` })) });
  const path = `/rooms/${room}/history`;
  const all = await call(edge, "GET", `${path}?since=0`, 200);
  assert.deepEqual([all.json.seq, all.json.more, all.json.messages.map((m) => m.seq)], [3, false, [1, 2, 3]]);
  const back = await call(edge, "GET", `${path}?before=3&limit=1`, 200);
  assert.deepEqual([back.json.more, back.json.messages.map((m) => m.seq)], [true, [2]]);
  assert.equal((await call(edge, "GET", `${path}?limit=0`, 200)).json.messages.length, 1, "limit 0 reads one");
  const reader = bearer(token("reader", { [room]: ["subscribe"] }));
  const page = await call(edge, "GET", `${path}?since=2`, 200, { auth: reader, headers: { origin: ORIGIN } });
  assert.deepEqual([page.headers.get("access-control-allow-origin"), page.headers.get("vary")], [ORIGIN, "Origin"]);
  const elsewhere = await call(edge, "GET", path, 200, { auth: reader, headers: { origin: "https://evil.example" } });
  assert.equal(elsewhere.headers.get("access-control-allow-origin"), null, "a page on another origin gets no CORS header");

  for (const query of ["since=1&before=2", "since=abc", "since=9007199254740992", "limit=-1", "before=1.5"]) {
    const res = await call(edge, "GET", `${path}?${query}`, 400, { headers: { origin: ORIGIN } });
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN, "refusals carry CORS too");
  }
  await call(edge, "GET", `/rooms/${BAD_ROOM}/history`, 400);
  await call(edge, "GET", path, 401, { auth: null });
  await call(edge, "GET", path, 401, { auth: bearer(forged("reader", { [room]: ALL_RIGHTS })) });
  await call(edge, "GET", path, 403, { auth: bearer(token("writer", { [room]: ["publish"] })), headers: { origin: ORIGIN } });
});

test("history on a small budget: a page cut by HISTORY_PAGE_MAX_BYTES says more; over the read budget 429", async () => {
  const room = roomName("oa-pages");
  // 40 bytes of data each (a JSON string of 38 characters): with a cap of 100 bytes a page holds
  // three (0, 40 and 80 bytes come before them, all under 100), and the fourth would start at 120.
  // Two batches by two callers: each caller's HTTP rate allows one batch at once here.
  const data = (i) => `${i}`.repeat(38);
  await call(tight, "POST", `/rooms/${room}/messages`, 200, { body: [{ data: data(1) }, { data: data(2) }] });
  const publisher = bearer(token("p2", { [room]: ["publish"] }));
  await call(tight, "POST", `/rooms/${room}/messages`, 200, { auth: publisher, body: [{ data: data(3) }, { data: data(4) }] });
  const path = `/rooms/${room}/history`;
  const reader = bearer(token("r1", { [room]: ["subscribe"] }));
  const first = await call(tight, "GET", `${path}?since=0`, 200, { auth: reader });
  assert.deepEqual([first.json.messages.map((m) => m.seq), first.json.more], [[1, 2, 3], true]);
  const rest = await call(tight, "GET", `${path}?since=3`, 200, { auth: reader });
  assert.deepEqual([rest.json.messages.map((m) => m.seq), rest.json.more], [[4], false], "the next page starts where the cut one stopped");
  const back = await call(tight, "GET", `${path}?before=5`, 200, { auth: reader });
  assert.deepEqual([back.json.messages.map((m) => m.seq), back.json.more], [[2, 3, 4], true], "backwards, the newest are kept");
  // READ_BYTES_BURST (1,000), refilling at 1 byte a second: these reads put r1 in debt, and
  // the next read is refused until the debt is paid. (ALLOWED_ORIGINS is empty here: every
  // origin may read, and is told Retry-After.)
  let refused;
  for (let i = 0; i < 5 && !refused; i++) {
    const res = await call(tight, "GET", `${path}?since=0`, undefined, { auth: reader, headers: { origin: "https://page.example" } });
    if (res.status === 429) refused = res;
  }
  assert.ok(refused, "the reader never ran out of read budget");
  assert.match(refused.headers.get("retry-after"), /^[1-9][0-9]*$/);
  assert.deepEqual(
    [refused.headers.get("access-control-allow-origin"), refused.headers.get("access-control-expose-headers")],
    ["https://page.example", "Retry-After"],
  );
});

test("the history preflight: 204 for an allowed origin, 403 for another or none, 400 for a bad room", async () => {
  const room = roomName("oa-preflight");
  const ok = await call(edge, "OPTIONS", `/rooms/${room}/history`, 204, { auth: null, headers: { origin: ORIGIN } });
  assert.equal(ok.headers.get("access-control-allow-origin"), ORIGIN);
  await call(edge, "OPTIONS", `/rooms/${room}/history`, 403, { auth: null, headers: { origin: "https://evil.example" } });
  await call(edge, "OPTIONS", `/rooms/${room}/history`, 403, { auth: null });
  await call(edge, "OPTIONS", `/rooms/${BAD_ROOM}/history`, 400, { auth: null, headers: { origin: ORIGIN } });
});

test("presence, stats, history deletion and webhook re-queueing; and their refusals", async () => {
  const room = roomName("oa-room");
  const alice = await Client.connect(edge, room, { cid: "a1", user: "alice", meta: JSON.stringify({ name: "Alice" }) });
  await call(edge, "POST", `/rooms/${room}/messages`, 200, { body: { data: "one" } });
  const presence = await call(edge, "GET", `/rooms/${room}/presence`, 200);
  assert.deepEqual(presence.json, { members: [{ user: "alice", connections: 1, meta: { name: "Alice" } }] });
  await call(edge, "GET", `/rooms/${room}/presence`, 200, { auth: bearer(token("watcher", { [room]: ["presence"] })) });
  const stats = await call(edge, "GET", `/rooms/${room}/stats`, 200);
  assert.deepEqual([stats.json.seq, stats.json.connections, stats.json.history, stats.json.oldest], [1, 1, 1, 1]);
  assert.equal((await call(edge, "POST", `/rooms/${room}/webhooks/requeue`, 200)).json.requeued, 0);
  const reset = await call(edge, "DELETE", `/rooms/${room}/history`, 200);
  assert.equal(reset.json.deleted, 1);
  assert.notEqual(reset.json.epoch, alice.welcome.epoch);
  assert.equal((await alice.closed).code, 4013, "every connection is closed with 4013 room reset");
  const empty = await call(edge, "GET", `/rooms/${room}/stats`, 200);
  assert.deepEqual([empty.json.seq, empty.json.oldest, empty.json.epoch], [0, null, reset.json.epoch]);

  const valid = bearer(token("alice", { [room]: ALL_RIGHTS }));
  for (const [method, endpoint] of [
    ["GET", "presence"],
    ["GET", "stats"],
    ["DELETE", "history"],
    ["POST", "webhooks/requeue"],
  ]) {
    await call(edge, method, `/rooms/${room}/${endpoint}`, 401, { auth: null });
    await call(edge, method, `/rooms/${room}/${endpoint}`, 401, { auth: bearer(expired("alice", { [room]: ALL_RIGHTS })) });
    await call(edge, method, `/rooms/${BAD_ROOM}/${endpoint}`, 400);
    // A valid token: on presence, without the right; on the rest, because they are the backend's.
    const auth = endpoint === "presence" ? bearer(token("alice", { [room]: ["subscribe", "publish"] })) : valid;
    await call(edge, method, `/rooms/${room}/${endpoint}`, 403, { auth });
  }
});

test("kick: removes and bans a user, whose token is then refused on publish and history; and its refusals", async () => {
  const room = roomName("oa-kick");
  const victim = await Client.connect(edge, room, { cid: "v1", user: "victim" });
  const kicked = await call(edge, "POST", `/rooms/${room}/kick`, 200, { body: { user: "victim", banSeconds: 600, reason: "spam" } });
  assert.deepEqual(kicked.json, { closed: 1 });
  assert.equal((await victim.closed).code, 4411);
  const banned = bearer(token("victim", { [room]: ALL_RIGHTS }));
  await call(edge, "POST", `/rooms/${room}/messages`, 403, { auth: banned, body: { data: "still here?" } });
  await call(edge, "GET", `/rooms/${room}/history`, 403, { auth: banned });
  assert.deepEqual((await call(edge, "POST", `/rooms/${room}/kick`, 200, { body: { user: "nobody" } })).json, { closed: 0 });
  for (const body of [
    "{",
    '["victim"]',
    { user: "a b" },
    { user: "v", extra: 1 },
    { user: "v", banSeconds: 2592001 },
    { user: "v", reason: "r".repeat(124) },
  ]) {
    await call(edge, "POST", `/rooms/${room}/kick`, 400, { body });
  }
  await call(edge, "POST", `/rooms/${BAD_ROOM}/kick`, 400, { body: { user: "v" } });
  await call(edge, "POST", `/rooms/${room}/kick`, 401, { auth: "Bearer wrong", body: { user: "v" } });
  await call(edge, "POST", `/rooms/${room}/kick`, 403, { auth: bearer(token("mod", { [room]: ALL_RIGHTS })), body: { user: "v" } });
});

test("closing a user's session: every session socket closes with 4411; and its refusals", async () => {
  const t = token("sess-user", { "*": ALL_RIGHTS });
  const ws = new WebSocket(`${edge.wsUrl}/session/ws`, ["roomcast.v1", `bearer.${t}`], { headers: { Origin: ORIGIN } });
  const closed = new Promise((resolve) => ws.once("close", (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.once("message", resolve);
    ws.once("error", reject);
  });
  assert.deepEqual((await call(edge, "DELETE", "/sessions/sess-user", 200)).json, { closed: 1 });
  assert.equal(await closed, 4411);
  assert.deepEqual((await call(edge, "DELETE", "/sessions/nobody-here", 200)).json, { closed: 0 });
  await call(edge, "DELETE", "/sessions/a%20b", 400);
  await call(edge, "DELETE", "/sessions/sess-user", 401, { auth: "Bearer wrong" });
  await call(edge, "DELETE", "/sessions/sess-user", 403, { auth: bearer(t) });
});

test("the WebSocket upgrade: 101 with the subprotocol, and every refusal before it", async () => {
  const room = roomName("oa-ws");
  const t = token("alice", { [room]: ALL_RIGHTS });
  const open = await upgrade(edge, `/rooms/${room}/ws?cid=a1`, 101, { protocols: ["roomcast.v1", `bearer.${t}`] });
  assert.equal(open.headers["sec-websocket-protocol"], "roomcast.v1");
  assert.equal(open.first.type, "welcome");
  // with errors=close, a refusal is an accepted socket closed at once with its code
  const closed = await upgrade(edge, `/rooms/${room}/ws?errors=close`, 101);
  assert.equal(closed.first.close, 4401);
  // a token in the query, no subprotocol offered: the server selects none
  const query = await upgrade(edge, `/rooms/${room}/ws?cid=a2&token=${t}`, 101, { protocols: [] });
  assert.equal(query.headers["sec-websocket-protocol"], undefined);

  await upgrade(edge, `/rooms/${room}/ws?cid=bad%20id`, 400, { protocols: ["roomcast.v1", `bearer.${t}`] });
  await upgrade(edge, `/rooms/${room}/ws?since=1`, 400, { protocols: ["roomcast.v1", `bearer.${t}`] });
  await upgrade(edge, `/rooms/${BAD_ROOM}/ws`, 400, { protocols: ["roomcast.v1", `bearer.${t}`] });
  await upgrade(edge, `/rooms/${room}/ws`, 401);
  await upgrade(edge, `/rooms/${room}/ws`, 401, { protocols: ["roomcast.v1", `bearer.${expired("alice", { [room]: ALL_RIGHTS })}`] });
  await upgrade(edge, `/rooms/${room}/ws`, 403, { protocols: ["roomcast.v1", `bearer.${token("alice", { other: ALL_RIGHTS })}`] });
  await upgrade(edge, `/rooms/${room}/ws`, 403, { protocols: ["roomcast.v1", `bearer.${t}`], headers: { origin: "https://evil.example" } });
  // a plain GET, not an upgrade
  await call(edge, "GET", `/rooms/${room}/ws`, 426, { auth: null });
});

test("the development token endpoint: loopback origins only, and off unless ROOMCAST_DEV_TOKENS is 1", async () => {
  const minted = await call(edge, "GET", "/dev/token?user=dev&room=chat:*&rights=subscribe,publish&ttl=60", 200, { auth: null });
  assert.equal(minted.json.user, "dev");
  const local = "http://localhost:5173";
  const fromPage = await call(edge, "GET", `/dev/token?user=dev&room=x&meta=${encodeURIComponent('{"n":1}')}`, 200, {
    auth: null,
    headers: { origin: local },
  });
  assert.equal(fromPage.headers.get("access-control-allow-origin"), local);
  for (const query of ["room=x", "user=dev", "user=:api&room=x", "user=dev&room=x&rights=admin", "user=dev&room=x&meta=%5B1%5D"]) {
    await call(edge, "GET", `/dev/token?${query}`, 400, { auth: null, headers: { origin: local } });
  }
  await call(edge, "GET", "/dev/token?user=dev&room=x", 403, { auth: null, headers: { origin: "https://evil.example" } });
  await call(tight, "GET", "/dev/token?user=dev&room=x", 404, { auth: null });
});

test("paths and methods the document does not list: 404, 405, and 400 for a bad room name", async () => {
  const room = roomName("oa-other");
  await call(edge, "GET", "/elsewhere", 404, { auth: null });
  await call(edge, "GET", `/rooms/${room}/nope`, 404);
  await call(edge, "POST", `/rooms/${room}/webhooks`, 404);
  await call(edge, "PUT", `/rooms/${room}/messages`, 405, { body: { data: 1 } });
  await call(edge, "OPTIONS", `/rooms/${room}/messages`, 405, { headers: { origin: ORIGIN } });
  await call(edge, "GET", `/rooms/${room}/kick`, 405);
  await call(edge, "POST", `/rooms/${room}/ws`, 405);
  await call(edge, "GET", `/rooms/${room}/webhooks/requeue`, 405);
  await call(edge, "POST", "/dev/token", 405, { auth: null });
  await call(edge, "PUT", `/rooms/${BAD_ROOM}/messages`, 400);
});

// Last but one, on the edge with the upgrade limit on: it uses up the local allowance for 10 s.
test("the WebSocket upgrade over the per-address limit: 429", async () => {
  const room = roomName("oa-limit");
  const statuses = [];
  // In waves, so that the burst lands within the limiter's 10-s window; without a token each is a 401.
  for (let wave = 0; wave < 10 && !statuses.includes(429); wave++) {
    const results = await Promise.all(Array.from({ length: 25 }, () => upgrade(tight, `/rooms/${room}/ws`)));
    statuses.push(...results.map((r) => r.status));
  }
  assert.ok(statuses.includes(429), `no 429 in ${statuses.length} upgrades`);
  assert.deepEqual(new Set(statuses), new Set([401, 429]));
});

test("every answer docs/openapi.json lists was provoked and matched, or cannot be provoked from outside", () => {
  const documented = documentedAnswers();
  const missing = documented.filter((a) => !seen.has(a) && !EXCUSED.has(a));
  assert.deepEqual(missing, [], "answers the document lists that no request here provoked");
  const stale = [...EXCUSED.keys()].filter((a) => !documented.includes(a) || seen.has(a));
  assert.deepEqual(stale, [], "excuses for answers the document no longer lists, or that a request provoked after all");
  assert.ok(seen.size >= documented.length - EXCUSED.size);
});
