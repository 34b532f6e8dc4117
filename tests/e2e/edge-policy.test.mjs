// The edge's policy (issue #13), end to end against the real local runtime: reserved identities,
// token meta with raw line feeds, close reasons within a close frame, history numbers past 2^53,
// errors=close for every refused upgrade, who may fetch a development token (by Origin and by
// Host), the per-IP upgrade limit against a forged CF-Connecting-IP, the HTTP API's caller
// identity, and the removal call.
// The pure policy behind each is tested natively in protocol/src/api/.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { devVar } from "../../tools/token.mjs";
import { ALL_RIGHTS, api, apiKey, Client, ROOT, roomName, startEdge, token } from "../harness.mjs";

let edge;
before(async () => {
  // The upgrade limit is off here (it has a test and an edge of its own below): this file opens
  // many sockets, and one address's allowance would otherwise run out midway.
  edge = await startEdge({ vars: { UPGRADE_LIMITER: "" } });
});
after(async () => {
  await edge?.stop();
});

const now = () => Math.floor(Date.now() / 1000);
const b64 = (text) => Buffer.from(text).toString("base64url");

/**
 * Signs a payload written as raw text with the development secret, the way a careless backend
 * could: whatever whitespace it holds, whatever `sub` it names (tools/token.mjs refuses reserved
 * users, so these are signed by hand).
 */
function signRaw(payload) {
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(payload);
  return `${head}.${body}.${createHmac("sha256", devVar("ROOMCAST_SECRET")).update(`${head}.${body}`).digest("base64url")}`;
}

/**
 * Tries an upgrade. Resolves with `{status: "open"}`, `{status, body}` for an HTTP refusal, or
 * `{close: code, reason}` (reason as the raw bytes) when the socket is accepted and closed at once.
 */
function attempt(target, path, { protocols = ["roomcast.v1"], headers = {} } = {}) {
  const ws = new WebSocket(`${target.wsUrl}${path}`, protocols, { headers, closeTimeout: 500 });
  return new Promise((resolve, reject) => {
    // An admitted socket gets its welcome; one the edge accepts only to refuse closes at once.
    ws.once("message", () => {
      ws.close();
      resolve({ status: "open" });
    });
    ws.once("close", (code, reason) => resolve({ close: code, reason }));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        let json;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, body: json, text: body });
      });
    });
    ws.once("error", (e) => {
      if (!ws.listenerCount("unexpected-response")) reject(e);
    });
  });
}

const bearerFor = (t) => ["roomcast.v1", `bearer.${t}`];

async function roomUntouched(room) {
  const stats = await api(edge, "GET", `/rooms/${room}/stats`);
  assert.equal(stats.status, 200);
  assert.deepEqual([stats.json.connectionsOpened, stats.json.seq], [0, 0], `${room} was touched`);
}

test("reserved identities in a token's sub are refused on sockets and the HTTP API", async () => {
  const room = roomName("reserved");
  for (const sub of [":api", "anon:x", ":foo"]) {
    const t = signRaw(JSON.stringify({ sub, exp: now() + 600, rooms: { [room]: ALL_RIGHTS } }));
    const res = await attempt(edge, `/rooms/${room}/ws`, { protocols: bearerFor(t) });
    assert.equal(res.status, 401, `${sub} was admitted`);
    assert.equal(res.body.error.code, "unauthorized", sub);
    assert.match(res.body.error.message, /reserved/, sub);
    const published = await api(edge, "POST", `/rooms/${room}/messages`, { data: `as ${sub}` }, { key: t });
    assert.equal(published.status, 401, `${sub} published over HTTP`);
  }
  await roomUntouched(room);
  // an ordinary user whose id merely contains a colon is fine
  const fine = token("team:alice", { [room]: ALL_RIGHTS });
  assert.equal((await attempt(edge, `/rooms/${room}/ws`, { protocols: bearerFor(fine) })).status, "open");
});

test("a token whose meta holds raw line feeds is admitted and its meta shown compact", async () => {
  const room = roomName("meta-lf");
  const alice = await Client.connect(edge, room, { cid: "alice", user: "alice" });
  const payload =
    `{"sub":"bob","exp":${now() + 600},"rooms":{"${room}":["subscribe","publish","presence"]},`
    + `"meta":{\n  "name" :\r\n "Bob",\n\t"tags": [ 1,\n 2 ]\n}\n}`;
  const bob = await Client.connect(edge, room, { cid: "bob" }, { token: signRaw(payload) });
  assert.equal(bob.welcome.user, "bob");
  const carol = await Client.connect(edge, room, { cid: "carol", user: "carol" });
  const seen = carol.welcome.members.find((m) => m.user === "bob");
  assert.deepEqual(seen.meta, { name: "Bob", tags: [1, 2] });
  assert.ok(carol.received[0].includes('"meta":{"name":"Bob","tags":[1,2]}'), carol.received[0]);
  // the honest member's frames all parse line by line (no raw line feed split a frame)
  await alice.next((f) => f.type === "presence" && JSON.stringify(f).includes('"bob"'));
  for (const text of alice.received) for (const line of text.split("\n")) JSON.parse(line);
  await Promise.all([alice, bob, carol].map((c) => c.close()));
});

test("with errors=close a refusal's reason over 123 bytes is cut on a character boundary", async () => {
  const room = roomName("reason");
  // a validly signed token whose claim error quotes 150 two-byte characters back
  const t = signRaw(JSON.stringify({ sub: "x", exp: "é".repeat(150), rooms: { [room]: ALL_RIGHTS } }));
  const res = await attempt(edge, `/rooms/${room}/ws?errors=close`, { protocols: bearerFor(t) });
  assert.equal(res.close, 4401, `expected a clean close, got ${JSON.stringify({ ...res, reason: String(res.reason) })}`);
  assert.ok(res.reason.length <= 123, `reason is ${res.reason.length} bytes`);
  assert.ok(res.reason.length >= 121, `reason cut too short: ${res.reason.length} bytes`);
  assert.ok(Buffer.from(res.reason.toString("utf8")).equals(res.reason), "the reason is whole UTF-8");
  assert.match(res.reason.toString(), /^token claims are invalid/);
  await roomUntouched(room);
});

test("history numbers at or above 2^53 are refused with 400 JSON at the edge", async () => {
  const room = roomName("since");
  for (const data of ["one", "two"]) assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { data })).status, 200);
  for (const query of ["since=9223372036854775808", "since=9007199254740992", "limit=9007199254740992", "since=18446744073709551616"]) {
    const res = await api(edge, "GET", `/rooms/${room}/history?${query}`);
    assert.equal(res.status, 400, `${query}: ${res.text.slice(0, 200)}`);
    assert.equal(res.json.error.code, "bad_request", query);
  }
  const below = await api(edge, "GET", `/rooms/${room}/history?since=9007199254740991`);
  assert.equal(below.status, 200);
  assert.deepEqual(below.json.messages, [], "nothing is newer than 2^53 - 1");
  const all = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    all.json.messages.map((m) => m.data),
    ["one", "two"],
  );
  // the resume point of an upgrade obeys the same bound
  const t = token("r", { [room]: ALL_RIGHTS });
  const res = await attempt(edge, `/rooms/${room}/ws?since=9223372036854775808&epoch=${all.json.epoch}`, { protocols: bearerFor(t) });
  assert.equal(res.status, 400);
  assert.equal(res.body.error.code, "bad_request");
});

test("every refused upgrade honours errors=close, a bad room name included", async () => {
  const t = token("n", { "*": ALL_RIGHTS });
  const bad = await attempt(edge, "/rooms/bad%20name/ws?errors=close", { protocols: bearerFor(t) });
  assert.equal(bad.close, 4400, JSON.stringify(bad));
  assert.match(bad.reason.toString(), /room name/);
  const tooLong = await attempt(edge, `/rooms/${"r".repeat(129)}/ws?errors=close`, { protocols: bearerFor(t) });
  assert.equal(tooLong.close, 4400);
  const badQuery = await attempt(edge, `/rooms/${roomName("q")}/ws?errors=close&cid=not%20valid`, { protocols: bearerFor(t) });
  assert.equal(badQuery.close, 4400);
  // without errors=close the same refusal is HTTP with a JSON body
  const plain = await attempt(edge, "/rooms/bad%20name/ws", { protocols: bearerFor(t) });
  assert.deepEqual([plain.status, plain.body.error.code], [400, "bad_request"]);
});

test("the development token endpoint answers no origin, its own and loopback origins, and no other site", async () => {
  const path = "/dev/token?user=dev&room=chat:*&rights=subscribe";
  const get = (origin) => fetch(`${edge.url}${path}`, { headers: origin ? { Origin: origin } : {} });
  for (const origin of ["https://evil.example", "http://localhost.evil.example", "null"]) {
    const res = await get(origin);
    assert.equal(res.status, 403, origin);
    assert.equal((await res.json()).error.code, "forbidden", origin);
    assert.equal(res.headers.get("access-control-allow-origin"), null, origin);
  }
  for (const origin of ["http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080", edge.url]) {
    const res = await get(origin);
    assert.equal(res.status, 200, origin);
    assert.equal(res.headers.get("access-control-allow-origin"), origin, "the origin is echoed, never *");
    assert.equal((await res.json()).user, "dev");
  }
  const none = await get(undefined);
  assert.equal(none.status, 200);
  assert.equal(none.headers.get("access-control-allow-origin"), null);
  const { token: t } = await none.json();
  assert.deepEqual(JSON.parse(Buffer.from(t.split(".")[1], "base64url")).rooms, { "chat:*": ["subscribe"] });
  // nor does it mint reserved identities
  assert.equal((await fetch(`${edge.url}/dev/token?user=:api&room=x`)).status, 400);
});

/** A GET with the `Host` header of our choosing (fetch sets its own), as a rebound browser sends it. */
function getWithHost(path, host, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: edge.port, path, headers: { ...headers, Host: host } }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, json: JSON.parse(body), cors: res.headers["access-control-allow-origin"] }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("the development token endpoint refuses a same-origin request to a host that is not loopback (DNS rebinding)", async () => {
  // Found by the red-team report (#22): a page on rebind.attacker.example, its name pointed at
  // 127.0.0.1, fetches /dev/token same-origin: no Origin header, and its Host names the attacker.
  const path = "/dev/token?user=dev&room=*";
  for (const host of [
    `rebind.attacker.example:${edge.port}`,
    "rebind.attacker.example",
    `127.0.0.1.attacker.example:${edge.port}`,
    `localhost.attacker.example:${edge.port}`,
  ]) {
    const res = await getWithHost(path, host);
    assert.equal(res.status, 403, host);
    assert.equal(res.json.error.code, "forbidden", host);
    assert.equal(res.json.token, undefined, host);
    // a loopback Origin does not make up for the host
    assert.equal((await getWithHost(path, host, { Origin: "http://localhost:5173" })).status, 403, host);
  }
  for (const host of [`127.0.0.1:${edge.port}`, `localhost:${edge.port}`, `demo.localhost:${edge.port}`, `[::1]:${edge.port}`]) {
    const res = await getWithHost(path, host);
    assert.equal(res.status, 200, host);
    assert.equal(res.json.user, "dev", host);
  }
});

test("the HTTP API acts as the token's own user; only the API key is :api, and a client's caller header is ignored", async () => {
  const room = roomName("caller");
  const watcher = await Client.connect(edge, room, { cid: "watcher", user: "watcher" });
  const svc = token("svc", { [room]: ["publish"] });
  const forged = JSON.stringify({ user: ":api", from: ":api" });
  const res = await fetch(`${edge.url}/rooms/${room}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${svc}`, "content-type": "application/json", "x-roomcast-caller": forged },
    body: JSON.stringify({ data: "from svc" }),
  });
  assert.equal(res.status, 200);
  assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { data: "from the backend" })).status, 200);
  const first = await watcher.next((f) => f.type === "message" && f.data === "from svc");
  assert.deepEqual([first.user, first.from], ["svc", ":http"]);
  const second = await watcher.next((f) => f.type === "message" && f.data === "from the backend");
  assert.deepEqual([second.user, second.from], [":api", ":api"]);
  await watcher.close();
});

test("the removal call takes the API key only and a checked body", async () => {
  const room = roomName("kick");
  const victim = await Client.connect(edge, room, { cid: "victim", user: "victim" });
  const kick = (body, options) => api(edge, "POST", `/rooms/${room}/kick`, body, options);
  const everything = token("mod", { [room]: ALL_RIGHTS });
  // a valid token is forbidden there (only the API key may kick); a wrong key is unauthorized
  for (const [key, status, code] of [
    [everything, 403, "forbidden"],
    ["not-the-key", 401, "unauthorized"],
  ]) {
    const res = await kick({ user: "victim" }, { key });
    assert.equal(res.status, status, `credential ${key.slice(0, 10)}…`);
    assert.equal(res.json.error.code, code);
  }
  const anonymous = await fetch(`${edge.url}/rooms/${room}/kick`, { method: "POST", body: JSON.stringify({ user: "victim" }) });
  assert.equal(anonymous.status, 401);
  for (const body of [
    "not json",
    {},
    { user: 5 },
    { user: "has space" },
    { user: "victim", banSeconds: -1 },
    { user: "victim", banSeconds: 1.5 },
    { user: "victim", banSeconds: 30 * 86400 + 1 },
    { user: "victim", reason: "é".repeat(62) },
    { user: "victim", extra: true },
    ["victim"],
    ["victim", 60],
  ]) {
    const res = await kick(body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(res.json.error.code, "bad_request", JSON.stringify(body));
  }
  assert.equal((await api(edge, "GET", `/rooms/${room}/kick`)).status, 405);
  assert.equal(victim.ws.readyState, WebSocket.OPEN, "nothing refused at the edge reached the room");
  // a valid call reaches the room, which closes the user's connections
  const res = await kick({ user: "victim", banSeconds: 60, reason: "spam" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.closed, 1);
  // The kick's reason travels to the room and is the close reason (it was dropped there before).
  const closed = await victim.closed;
  assert.deepEqual([closed.code, String(closed.reason)], [4411, "spam"]);
});

// Last, on an edge of its own with the limit on: it uses up the local allowance for 10 s.
test("a forged CF-Connecting-IP does not dodge the per-IP upgrade limit locally", async () => {
  const own = await startEdge();
  try {
    const room = roomName("forged-ip");
    // In waves of 25 at once, so the burst lands inside the limiter's fixed 10-s window even on a
    // loaded machine. Every attempt claims another address; without a token each is otherwise a 401.
    const statuses = [];
    for (let wave = 0; wave < 10 && !statuses.includes(429); wave++) {
      const headers = (i) => ({ "CF-Connecting-IP": `198.51.100.${i % 250}`, "X-Forwarded-For": `203.0.113.${i % 250}` });
      const results = await Promise.all(
        Array.from({ length: 25 }, (_, j) => attempt(own, `/rooms/${room}/ws`, { headers: headers(wave * 25 + j) })),
      );
      statuses.push(...results.map((r) => r.status));
    }
    assert.ok(statuses.includes(429), `no 429 in ${statuses.length} attempts with forged addresses`);
    assert.ok(statuses.indexOf(429) >= 50, "the limit is not hit by ordinary traffic");
    // and a further fresh address is refused too, as a close code when asked
    const again = await attempt(own, `/rooms/${room}/ws?errors=close`, { headers: { "CF-Connecting-IP": "192.0.2.1" } });
    assert.equal(again.close, 4029);
  } finally {
    await own.stop();
  }
});

// On an edge of its own with the limits on, like the test before it.
test("upgrades without a valid token spend their own budget: they cannot lock out users with tokens on the address", async () => {
  // Found by the red-team report (#22): a hostile page opening token-less sockets from a
  // visitor's browser spent the address's one upgrade budget, and real users there got 429.
  const own = await startEdge({ vars: { ANONYMOUS_ROOMS: "public:*" } });
  try {
    const room = roomName("budget");
    const valid = token("alice", { [room]: ALL_RIGHTS });
    const forged = `${valid.slice(0, -4)}AAAA`;
    const expired = token("alice", { [room]: ALL_RIGHTS }, { ttlSeconds: -120 });
    // none, a forged one, an expired one: none of them is a valid token
    const offers = [["roomcast.v1"], bearerFor(forged), bearerFor(expired)];
    const statuses = [];
    for (let wave = 0; wave < 10 && !statuses.includes(429); wave++) {
      const results = await Promise.all(
        Array.from({ length: 25 }, (_, j) => attempt(own, `/rooms/${room}/ws`, { protocols: offers[j % 3] })),
      );
      statuses.push(...results.map((r) => r.status));
    }
    assert.ok(statuses.includes(429), `no 429 in ${statuses.length} upgrades without a valid token`);
    assert.deepEqual([...new Set(statuses)].sort(), [401, 429], "refused for the token, then for the budget");
    // the address's users with tokens still connect, over and over, while the other budget is spent
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await attempt(own, `/rooms/${room}/ws`, { protocols: bearerFor(valid) }), { status: "open" }, `connection ${i}`);
    }
    // Anonymous rooms admit without a token: their upgrades share the spent budget (docs/SECURITY.md).
    assert.equal((await attempt(own, "/rooms/public:lobby/ws?errors=close")).close, 4029);
  } finally {
    await own.stop();
  }
});

/** wrangler.toml's bound on new rooms per user and window (the docs state it; protocol/tests/wrangler_config.rs holds them equal). */
function creationBound() {
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
  const [, limit, period] = toml.match(/name = "ROOM_CREATIONS_PER_USER"\n[^\n]*\nsimple = \{ limit = (\d+), period = (\d+) \}/);
  return { limit: Number(limit), period: Number(period) };
}

test("one token creates at most ROOM_CREATIONS_PER_USER new rooms a window; existing rooms and the backend are not limited", async () => {
  // Found by the red-team report (#22): a prefix-pattern token created 40-110 rooms/s over HTTP
  // publish, each keeping its storage and sending its own webhooks.
  const { limit, period } = creationBound();
  const prefix = roomName("made");
  const t = token(`maker-${process.pid}`, { [`${prefix}:*`]: ALL_RIGHTS });
  const publish = (room, key = t) => api(edge, "POST", `/rooms/${room}/messages`, { data: room }, { key });
  const created = [];
  let refused;
  let made; // the storage files the last room created brought
  // Until the first refusal: a window may turn over once during the loop, so up to twice the bound.
  for (let i = 0; i < 3 * limit && !refused; i++) {
    const room = `${prefix}:${i}`;
    const before = storageFilesAll();
    const res = await publish(room);
    const fresh = storageFilesAll().filter((f) => !before.includes(f));
    if (res.status === 429) refused = { room, res, fresh };
    else {
      assert.equal(res.status, 200, `${room}: ${res.text}`);
      created.push(room);
      made = fresh;
    }
  }
  assert.ok(refused, `${created.length} new rooms and no 429`);
  assert.ok(created.length >= limit && created.length <= 2 * limit, `${created.length} new rooms before the first 429`);
  assert.equal(refused.res.json.error.code, "rate_limited");
  assert.equal(refused.res.headers.get("retry-after"), String(period));
  // The refused room kept no state of its own: none of the room's tables is in its object's
  // storage (the local runtime opens a database for every object it starts, with its own table
  // in it), while the room made just before holds them.
  assert.ok(holdsRoomTables(made), `the check can fail: ${made}`);
  assert.ok(!holdsRoomTables(refused.fresh), `the refused room stored its tables: ${refused.fresh}`);
  // a connection that would create a room is refused too, before any welcome (4029, retryable)
  const socket = await attempt(edge, `/rooms/${prefix}:by-socket/ws`, { protocols: bearerFor(t) });
  assert.equal(socket.close, 4029, JSON.stringify(socket));
  // its reason names the wait, as the HTTP answer's Retry-After does
  const wait = Number(/; retryAfterMs=(\d+)$/.exec(String(socket.reason))?.[1]);
  assert.ok(wait > 0 && wait <= period * 1000, String(socket.reason));
  // the rooms it made are not limited: publishes, history and connections go on
  for (const room of created.slice(0, 3)) {
    assert.equal((await publish(room)).status, 200, room);
    assert.equal((await api(edge, "GET", `/rooms/${room}/history`, undefined, { key: t })).status, 200, room);
  }
  assert.deepEqual(await attempt(edge, `/rooms/${created[0]}/ws`, { protocols: bearerFor(t) }), { status: "open" });
  // another user is not limited by this one's window
  const other = token(`other-${process.pid}`, { [`${prefix}:*`]: ALL_RIGHTS });
  assert.equal((await publish(`${prefix}:by-other`, other)).status, 200);
  // the refused rooms stored nothing: the backend (not limited) finds them new and empty
  for (const room of [refused.room, `${prefix}:by-socket`]) {
    const stats = await api(edge, "GET", `/rooms/${room}/stats`);
    assert.equal(stats.status, 200, room);
    assert.deepEqual([stats.json.seq, stats.json.connectionsOpened], [0, 0], room);
  }
  for (let i = 0; i < limit + 1; i++) {
    assert.equal((await publish(`${prefix}:by-backend-${i}`, apiKey())).status, 200, "the API key is not limited");
  }
});

/** Whether any of these storage files (a database, its write-ahead log) holds the room's schema. */
function holdsRoomTables(files) {
  const root = join(edge.persistDir, "v3", "do");
  return files.some((f) => existsSync(join(root, f)) && readFileSync(join(root, f)).includes("CREATE TABLE meta "));
}

/** Every file of the Durable Objects' local storage: a room its first event wakes creates one. */
function storageFiles() {
  const root = join(edge.persistDir, "v3", "do");
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(".sqlite"))
    .sort();
}

/** storageFiles() with each database's write-ahead log and shared memory. */
function storageFilesAll() {
  const root = join(edge.persistDir, "v3", "do");
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true })
    .map(String)
    .filter((f) => f.includes(".sqlite"))
    .sort();
}

test("every 400 and 413 of the HTTP API is answered at the edge, without waking the room", async () => {
  const room = roomName("never-woken");
  const before = storageFiles();
  const huge = "x".repeat(2 * 1024 * 1024);
  const refused = [
    // history: since and before together was refused inside the room, after waking it
    ["GET", `/rooms/${room}/history?since=1&before=5`, undefined, 400],
    ["GET", `/rooms/${room}/history?since=abc`, undefined, 400],
    // publish: a malformed body or one over the room's limits was parsed again inside the room
    ["POST", `/rooms/${room}/messages`, "{", 400],
    ["POST", `/rooms/${room}/messages`, "[]", 400],
    ["POST", `/rooms/${room}/messages`, '[[1,"id"]]', 400],
    ["POST", `/rooms/${room}/messages`, { data: 1, id: "" }, 400],
    ["POST", `/rooms/${room}/messages`, { data: huge }, 413],
    ["POST", `/rooms/${room}/kick`, { user: "bob", extra: 1 }, 400],
    ["POST", `/rooms/${room}/kick`, { user: "bob", reason: "r".repeat(124) }, 400],
  ];
  for (const [method, path, body, status] of refused) {
    const res = await api(edge, method, path, body);
    assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
    assert.ok(res.json?.error?.code, `${method} ${path} has a JSON error body`);
  }
  assert.deepEqual(storageFiles(), before, "a refused request woke the room");
  // The check can fail: an accepted request wakes the room, which creates its storage.
  assert.equal((await api(edge, "POST", `/rooms/${room}/kick`, { user: "bob", reason: "spam" })).status, 200);
  assert.notDeepEqual(storageFiles(), before, "an accepted request should have woken the room");
});

test("a user-limited room admits only the users its name lists, whatever the token's patterns grant", async () => {
  const base = roomName("dm").replace(/[^A-Za-z0-9_.:-]/g, "");
  const room = `${base}~alice,bob`;
  const grant = { "*": ALL_RIGHTS };
  const alice = await Client.connect(edge, room, { cid: "alice" }, { token: token("alice", grant) });
  assert.equal(alice.welcome.user, "alice");
  // carol's token grants every room, but the name does not list her: refused on the socket…
  const carol = await attempt(edge, `/rooms/${room}/ws`, { protocols: bearerFor(token("carol", grant)) });
  assert.equal(carol.status, 403, JSON.stringify(carol));
  // …and on the HTTP API with her token; the backend's key may.
  const published = await api(edge, "POST", `/rooms/${room}/messages`, { data: "hi" }, { key: token("carol", grant) });
  assert.equal(published.status, 403, published.text);
  assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { data: "from the backend" })).status, 200);
  // bob, listed, is admitted with a pattern covering every dm room.
  const bob = await Client.connect(edge, room, { cid: "bob" }, { token: token("bob", { [`${base}~*`]: ALL_RIGHTS }) });
  assert.equal(bob.welcome.user, "bob");
  // A name whose users are out of order is a bad name.
  const unordered = await attempt(edge, `/rooms/${base}~bob,alice/ws`, { protocols: bearerFor(token("alice", grant)) });
  assert.equal(unordered.status, 400);
  alice.close();
  bob.close();
});
