// Trust (issue #13), end to end against the real runtime: no client can forge frames (raw line
// feeds in JSON text), take over another user's client id or idempotency keys, publish as the
// backend, flood a room (HTTP API, resume replays, connections per user, presence churn, pings),
// learn who is online without the presence right, or stay past its token's expiry; the backend
// can remove a user. Every test keeps an honest member in the room whose connection survives and
// who receives exactly the real messages, in order.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ALL_RIGHTS, api, apiKey, Client, roomName, startEdge, token, until } from "../harness.mjs";

const PER_USER = 3;
const PRESENCE_RATE = 2;
const HTTP_RATE = 5;
const HTTP_BURST = 10;
const BATCH_MAX_BYTES = 2048;
const READ_BURST = 4096;
let edge; // default limits, but few connections per user and a slow presence rate
let tight; // small HTTP and read budgets
before(async () => {
  // UPGRADE_LIMITER off: the churn and replay loops open more sockets than 100 per 10 s.
  [edge, tight] = await Promise.all([
    startEdge({ vars: { UPGRADE_LIMITER: "", MAX_CONNECTIONS_PER_USER: PER_USER, PRESENCE_RATE_PER_SEC: PRESENCE_RATE } }),
    startEdge({
      vars: {
        // the HTTP burst is at least one full batch, so PUBLISH_BATCH_MAX is small too
        UPGRADE_LIMITER: "",
        HTTP_RATE_MESSAGES_PER_SEC: HTTP_RATE,
        HTTP_RATE_MESSAGES_BURST: HTTP_BURST,
        PUBLISH_BATCH_MAX: HTTP_BURST,
        PUBLISH_BATCH_MAX_BYTES: BATCH_MAX_BYTES,
        READ_BYTES_PER_SEC: 1024,
        READ_BYTES_BURST: READ_BURST,
      },
    }),
  ]);
});
after(async () => {
  await Promise.all([edge?.stop(), tight?.stop()]);
});

/** Every client here records lines that are not JSON instead of throwing: hostile input is the point. */
const connect = (on, room, query, options = {}) => Client.connect(on, room, query, { lenient: true, ...options });

/**
 * Resolves once `cond()` holds after a received message ({ok: true}), the socket closes
 * ({closed: {code, reason}}), or `timeoutMs` pass ({timeout: true}), whichever comes first.
 */
function settle(client, cond, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    const done = (value) => {
      clearTimeout(timer);
      client.ws.off("message", check);
      resolve(value);
    };
    // Registered after the client's own listener, so the message is already recorded.
    const check = () => {
      if (cond()) done({ ok: true });
    };
    const timer = setTimeout(() => done({ timeout: true }), timeoutMs);
    client.ws.on("message", check);
    client.closed.then((closed) => done({ closed }));
    check();
  });
}

/** The close code the room closes `client` with within `timeoutMs`, or "still open". */
async function closeCode(client, timeoutMs = 10_000) {
  const outcome = await settle(client, () => false, timeoutMs);
  return outcome.closed ? outcome.closed.code : "still open";
}

/** JSON text with the whitespace outside strings removed: numbers and escapes kept as written. */
function compact(text) {
  let out = "";
  let inString = false;
  let escaped = false;
  for (const ch of text) {
    if (inString) {
      out += ch;
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') {
      inString = true;
      out += ch;
    } else if (!" \t\r\n".includes(ch)) {
      out += ch;
    }
  }
  return out;
}

const FORGED_MESSAGE = '{"type":"message","seq":999999,"from":"alice","user":"alice","id":"forged","data":"FORGED","ts":1}';
const FORGED_DIRECT = '{"type":"direct","from":"alice","user":"alice","data":"FORGED","ts":1}';

/**
 * `data` as JSON text that is valid JSON but has raw line feeds (and CR, tab, spaces) between
 * tokens, so that a complete forged `message` and a forged `direct` frame each sit on a line of
 * their own; plus an escape and a number that compacting must keep byte for byte.
 */
function hostile(tag) {
  return `{"tag":"${tag}","a":\n${FORGED_MESSAGE}\n,"d":\n${FORGED_DIRECT}\n,\t"b" : [1, 2.50,\r\n3], "s":"caf\\u00e9  \\n"}`;
}

const textOf = (value) => JSON.stringify(value);

/**
 * Splits everything `client` received on "\n", as every client must, and checks that the lines
 * are exactly the frames the room meant: each line is one JSON frame; the `message` frames have
 * seqs `from`, `from`+1, … and carry `messages` (JSON texts) as their data, in compact form; the
 * `direct` frames carry `directs`. Returns the frames.
 */
function assertExact(client, { messages = [], directs = [], from = 1 }, who) {
  const lines = client.received.flatMap((text) => text.split("\n"));
  const frames = lines.map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      return assert.fail(`${who}: a received line is not a whole frame: ${JSON.stringify(line.slice(0, 300))}`);
    }
  });
  const check = (type, expected) => {
    const got = frames.map((frame, i) => [frame, lines[i]]).filter(([f]) => f.type === type);
    assert.equal(got.length, expected.length, `${who}: ${type} frames: ${JSON.stringify(got.map(([, l]) => l)).slice(0, 1000)}`);
    got.forEach(([frame, line], i) => {
      assert.deepEqual(frame.data, JSON.parse(expected[i]), `${who}: ${type} ${i} data`);
      assert.ok(line.includes(`"data":${compact(expected[i])}`), `${who}: ${type} ${i} carries its data compacted: ${line}`);
    });
    return got.map(([f]) => f);
  };
  const stored = check("message", messages);
  assert.deepEqual(
    stored.map((m) => m.seq),
    messages.map((_, i) => from + i),
    `${who}: seqs are contiguous and real`,
  );
  check("direct", directs);
  return frames;
}

/** The ack or error answering the frame with this id (not an echoed message carrying the same id). */
const answerTo = (client, id) => client.next((f) => (f.type === "ack" || f.type === "error") && f.id === id);

const stillOpen = (client, who) => assert.equal(client.ws.readyState, 1, `${who}'s connection survives`);

const messagesPath = (room) => `/rooms/${room}/messages`;

// --- 1. Forged frames through raw line feeds -------------------------------------------------

test("forged frames: a WebSocket publish with raw line feeds in data cannot start or end a frame", async () => {
  const room = roomName("forge-ws");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const mallory = await connect(edge, room, { cid: "mallory", user: "mallory", echo: 1 });
  const data = hostile("ws");
  mallory.raw(`{"type":"publish","id":"h1","data":${data}}`);
  const ack = await answerTo(mallory, "h1");
  assert.deepEqual([ack.type, ack.seq], ["ack", 1]);
  await mallory.publish("end", "end");
  await honest.next((f) => f.type === "message" && f.data === "end");
  assertExact(honest, { messages: [data, textOf("end")] }, "honest member");
  assertExact(mallory, { messages: [data, textOf("end")] }, "the publisher's own echo");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, mallory].map((c) => c.close()));
});

test("forged frames: a direct message with raw line feeds reaches its target as exactly one frame", async () => {
  const room = roomName("forge-direct");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const victim = await connect(edge, room, { cid: "victim", user: "victim" });
  const mallory = await connect(edge, room, { cid: "mallory", user: "mallory" });
  const data = hostile("direct");
  mallory.raw(`{"type":"direct","id":"d1","to":{"user":"victim"},"data":${data}}`);
  assert.equal((await answerTo(mallory, "d1")).type, "ack");
  // a clean direct after it marks the end of what the victim will get from mallory
  mallory.send({ type: "direct", id: "d2", to: { user: "victim" }, data: "end" });
  await victim.next((f) => f.type === "direct" && f.data === "end");
  assertExact(victim, { directs: [data, textOf("end")] }, "the victim");
  await mallory.publish("after", "after");
  await honest.next((f) => f.type === "message" && f.data === "after");
  assertExact(honest, { messages: [textOf("after")] }, "honest member");
  stillOpen(honest, "the honest member");
  stillOpen(victim, "the victim");
  await Promise.all([honest, victim, mallory].map((c) => c.close()));
});

test("forged frames: HTTP publishes (single and batch) with raw line feeds reach members as exact frames", async () => {
  const room = roomName("forge-http");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const [single, first, second] = [hostile("http-single"), hostile("http-batch-1"), hostile("http-batch-2")];
  const one = await api(edge, "POST", messagesPath(room), `{"data":${single},\n"id":"s1"}`);
  assert.deepEqual([one.status, one.json?.seq], [200, 1], one.text);
  const batch = await api(edge, "POST", messagesPath(room), `[\n{"data":${first},"id":"b1"},\n{"id":"b2","data":${second}}\n]`);
  assert.deepEqual([batch.status, batch.json?.messages?.map((m) => m.seq)], [200, [2, 3]], batch.text);
  assert.equal((await api(edge, "POST", messagesPath(room), { data: "end" })).status, 200);
  await honest.next((f) => f.type === "message" && f.data === "end");
  assertExact(honest, { messages: [single, first, second, textOf("end")] }, "honest member");
  stillOpen(honest, "the honest member");
  await honest.close();
});

test("forged frames: a resume replay carries exactly the stored frames", async () => {
  const room = roomName("forge-replay");
  const reader = await connect(edge, room, { cid: "reader", user: "reader" });
  const { epoch } = reader.welcome;
  await reader.close();
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const mallory = await connect(edge, room, { cid: "mallory", user: "mallory" });
  const [viaWs, viaHttp] = [hostile("replay-ws"), hostile("replay-http")];
  mallory.raw(`{"type":"publish","id":"h1","data":${viaWs}}`);
  assert.equal((await answerTo(mallory, "h1")).seq, 1);
  assert.equal((await api(edge, "POST", messagesPath(room), `{"data":${viaHttp}}`)).status, 200);
  assert.equal((await mallory.publish("end", "end")).seq, 3);
  const expected = [viaWs, viaHttp, textOf("end")];

  const back = await connect(edge, room, { cid: "reader", user: "reader", since: 0, epoch });
  assert.deepEqual(back.welcome.resume, { status: "recovered", replayed: 3 });
  await settle(back, () => back.frames.some((f) => f.type === "message" && f.data === "end"));
  assertExact(back, { messages: expected }, "the resuming client");
  const middle = await connect(edge, room, { cid: "reader2", user: "reader2", since: 1, epoch });
  await settle(middle, () => middle.frames.some((f) => f.type === "message" && f.data === "end"));
  assertExact(middle, { messages: expected.slice(1), from: 2 }, "a client resuming from seq 1");

  await honest.next((f) => f.type === "message" && f.data === "end");
  assertExact(honest, { messages: expected }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, mallory, back, middle].map((c) => c.close()));
});

test("forged frames: HTTP history returns every message compact, with no raw line feed", async () => {
  const room = roomName("forge-history");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const mallory = await connect(edge, room, { cid: "mallory", user: "mallory" });
  const [viaWs, viaHttp] = [hostile("history-ws"), hostile("history-http")];
  mallory.raw(`{"type":"publish","id":"h1","data":${viaWs}}`);
  assert.equal((await answerTo(mallory, "h1")).seq, 1);
  assert.equal((await api(edge, "POST", messagesPath(room), `[{"data":${viaHttp}}]`)).status, 200);
  const expected = [viaWs, viaHttp];
  for (const key of [undefined, token("reader", { [room]: ["subscribe"] })]) {
    const res = await api(edge, "GET", `/rooms/${room}/history?since=0`, undefined, key ? { key } : {});
    assert.equal(res.status, 200, res.text);
    assert.ok(!/[\r\n]/.test(res.text), `no raw line feed in the history body: ${JSON.stringify(res.text.slice(0, 300))}`);
    assert.deepEqual(
      res.json.messages.map((m) => m.seq),
      [1, 2],
    );
    res.json.messages.forEach((m, i) => {
      assert.deepEqual(m.data, JSON.parse(expected[i]));
      assert.ok(res.text.includes(`"data":${compact(expected[i])}`), `history message ${m.seq} is compact`);
    });
  }
  await honest.next((f) => f.type === "message" && f.seq === 2 && f.data?.tag === "history-http");
  assertExact(honest, { messages: expected }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, mallory].map((c) => c.close()));
});

// --- 2. Client ids belong to one user --------------------------------------------------------

test("client id takeover: another user with alice's client id gets neither her directs nor her idempotency keys", async () => {
  const room = roomName("cid-theft");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const alice = await connect(edge, room, { cid: "alice-tab", user: "alice" });
  const bob = await connect(edge, room, { cid: "bob-tab", user: "bob" });
  assert.equal((await alice.publish("a-1", "alice 1")).seq, 1);

  const mallory = await connect(edge, room, { cid: "alice-tab", user: "mallory" }, { welcome: false });
  // mallory publishes alice's next message id first
  mallory.send({ type: "publish", id: "a-2", data: "mallory as alice" });
  bob.send({ type: "direct", id: "d1", to: { clientId: "alice-tab" }, data: "for alice only" });
  await answerTo(bob, "d1");
  assert.equal((await alice.next((f) => f.type === "direct")).data, "for alice only");
  // bob's publish after the direct reaches mallory after it, if she is still connected
  await bob.publish("b-1", "marker");
  const outcome = await settle(mallory, () => mallory.messages().some((m) => m.data === "marker"));
  assert.ok(!outcome.timeout, "mallory is either closed or gets the marker");
  if (outcome.closed) assert.equal(outcome.closed.code, 4412, "closed as 'client id belongs to another user'");
  assert.deepEqual(
    mallory.frames.filter((f) => f.type === "direct"),
    [],
    "mallory never receives alice's direct messages",
  );

  const ack = await alice.publish("a-2", "alice 2");
  assert.equal(ack.type, "ack", JSON.stringify(ack));
  assert.equal(ack.duplicate, undefined, `alice's own publish is no duplicate: ${JSON.stringify(ack)}`);
  await honest.next((f) => f.type === "message" && f.data === "alice 2");
  const fromAliceTab = honest
    .messages()
    .filter((m) => m.from === "alice-tab")
    .map((m) => [m.user, m.data]);
  assert.deepEqual(
    fromAliceTab,
    [
      ["alice", "alice 1"],
      ["alice", "alice 2"],
    ],
    "only alice publishes as alice-tab",
  );
  assertExact(honest, { messages: ["alice 1", "marker", "alice 2"].map(textOf) }, "honest member");
  stillOpen(honest, "the honest member");
  stillOpen(alice, "alice");
  await Promise.all([honest, alice, bob, mallory].map((c) => c.close()));
});

// --- 3. A token on the HTTP API acts as its own user ------------------------------------------

test("HTTP publish with a user's token is that user's (from ':http'), in its own idempotency namespace", async () => {
  const room = roomName("http-identity");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const svc = token("svc", { [room]: ["subscribe", "publish"] });
  const byToken = await api(edge, "POST", messagesPath(room), { data: "from a token", id: "X" }, { key: svc });
  assert.deepEqual([byToken.status, byToken.json], [200, { seq: 1, id: "X" }], byToken.text);
  const byKey = await api(edge, "POST", messagesPath(room), { data: "from the backend", id: "X" });
  assert.deepEqual([byKey.status, byKey.json], [200, { seq: 2, id: "X" }], "the token's id X does not make the backend's X a duplicate");
  const retry = await api(edge, "POST", messagesPath(room), { data: "from a token", id: "X" }, { key: svc });
  assert.deepEqual(retry.json, { seq: 1, id: "X", duplicate: true }, "the token's own retry is still idempotent");
  const batch = await api(edge, "POST", messagesPath(room), [{ data: "batched by a token" }], { key: svc });
  assert.deepEqual(batch.json, { messages: [{ seq: 3 }] });
  await until(() => honest.messages().length >= 3, { what: "three messages" });
  const seen = honest.messages().map((m) => [m.seq, m.user, m.from, m.data]);
  assert.deepEqual(seen, [
    [1, "svc", ":http", "from a token"],
    [2, ":api", ":api", "from the backend"],
    [3, "svc", ":http", "batched by a token"],
  ]);
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    history.json.messages.map((m) => [m.seq, m.user, m.from]),
    seen.map(([s, u, f]) => [s, u, f]),
  );
  assertExact(honest, { messages: ["from a token", "from the backend", "batched by a token"].map(textOf) }, "honest member");
  stillOpen(honest, "the honest member");
  await honest.close();
});

// --- 4. Floods ------------------------------------------------------------------------------

test("HTTP API flood: over the rate 429 with Retry-After and a JSON body; members get exactly the accepted messages", async () => {
  const room = roomName("http-flood");
  const honest = await connect(tight, room, { cid: "honest", user: "honest" });
  const sent = 40;
  const answers = await Promise.all(
    Array.from({ length: sent }, (_, i) =>
      api(tight, "POST", messagesPath(room), { data: { i }, id: `f${i}` }).then((res) => ({ i, res })),
    ),
  );
  const accepted = new Map(); // seq -> data
  let limited = 0;
  for (const { i, res } of answers) {
    if (res.status === 200) {
      accepted.set(res.json.seq, { i });
      continue;
    }
    assert.equal(res.status, 429, res.text);
    assert.equal(res.json?.error?.code, "rate_limited", res.text);
    assert.match(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/, "Retry-After in whole seconds");
    limited++;
  }
  assert.ok(limited > 0, `all ${sent} HTTP publishes were accepted: no rate limit`);
  assert.ok(accepted.size >= HTTP_BURST, `the burst is served: ${accepted.size} accepted`);
  // the limit lifts again with time
  let later;
  await until(
    async () => {
      later = await api(tight, "POST", messagesPath(room), { data: "later" });
      return later.status === 200;
    },
    { timeoutMs: 10_000, intervalMs: 300, what: "the rate to allow a publish again" },
  );
  accepted.set(later.json.seq, "later");
  await until(() => honest.messages().length >= accepted.size, { what: "every accepted message" });
  const seqs = [...accepted.keys()].sort((a, b) => a - b);
  assert.deepEqual(
    seqs,
    Array.from({ length: accepted.size }, (_, n) => n + 1),
    "accepted seqs are contiguous",
  );
  assertExact(honest, { messages: seqs.map((s) => textOf(accepted.get(s))) }, "honest member");
  assert.equal((await api(tight, "GET", `/rooms/${room}/stats`)).json.seq, accepted.size, "refused publishes were not stored");
  stillOpen(honest, "the honest member");
  await honest.close();
});

test("HTTP API: a batch whose data is over PUBLISH_BATCH_MAX_BYTES is refused whole with 413", async () => {
  const room = roomName("http-batchbytes");
  const honest = await connect(tight, room, { cid: "honest", user: "honest" });
  const big = Array.from({ length: 3 }, (_, i) => ({ data: `${i}`.repeat(Math.ceil(BATCH_MAX_BYTES / 2)) }));
  const res = await api(tight, "POST", messagesPath(room), big);
  assert.equal(res.status, 413, res.text.slice(0, 300));
  assert.ok(res.json?.error?.code, res.text.slice(0, 300));
  assert.equal((await api(tight, "GET", `/rooms/${room}/stats`)).json.seq, 0, "nothing of it was stored");
  // a body that says it is far larger than any batch is refused at the edge, before it is read
  const huge = await fetch(`${tight.url}${messagesPath(room)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey()}`, "content-type": "application/json" },
    body: JSON.stringify({ data: "x".repeat(BATCH_MAX_BYTES * 4) }),
  });
  assert.equal(huge.status, 413);
  assert.equal((await huge.json()).error.code, "too_large");
  // without a length (chunked) the size is unknown: refused unread as well
  const chunked = await fetch(`${tight.url}${messagesPath(room)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey()}`, "content-type": "application/json" },
    body: new Blob([JSON.stringify({ data: "x" })]).stream(),
    duplex: "half",
  });
  assert.equal(chunked.status, 411);
  const small = await api(tight, "POST", messagesPath(room), [{ data: "a" }, { data: "b" }]);
  assert.equal(small.status, 200, small.text);
  await until(() => honest.messages().length >= 2, { what: "the small batch" });
  assertExact(honest, { messages: ["a", "b"].map(textOf) }, "honest member");
  stillOpen(honest, "the honest member");
  await honest.close();
});

test("resume replay loop by a subscribe-only user is closed with 4029; history over the budget gets 429", { timeout: 90_000 }, async () => {
  const room = roomName("replay-loop");
  const honest = await connect(tight, room, { cid: "honest", user: "honest" });
  const publisher = await connect(tight, room, { cid: "pub", user: "pub" });
  const { epoch } = honest.welcome;
  const count = 20;
  const datas = Array.from({ length: count }, (_, i) => ({ i, pad: "x".repeat(400) })); // ~9 KB, over READ_BYTES_BURST
  for (const [i, data] of datas.entries()) assert.equal((await publisher.publish(`p${i}`, data)).seq, i + 1);
  const leech = token("leech", { [room]: ["subscribe"] });
  let refusedWith;
  let replays = 0;
  for (let attempt = 0; attempt < 30 && refusedWith === undefined; attempt++) {
    const c = await connect(tight, room, { cid: "leech", since: 0, epoch }, { token: leech, welcome: false });
    const outcome = await settle(c, () => c.messages().length >= count);
    if (outcome.closed) refusedWith = outcome.closed.code;
    else {
      assert.ok(outcome.ok, "a replay that is not refused arrives whole");
      assertExact(c, { messages: datas.map(textOf) }, `replay ${attempt}`);
      replays++;
      c.ws.close(1000);
    }
  }
  assert.equal(refusedWith, 4029, `the replay loop was never cut off (${replays} full replays)`);
  const history = await api(tight, "GET", `/rooms/${room}/history?since=0`, undefined, { key: leech });
  assert.equal(history.status, 429, "history over the same budget is refused");
  assert.equal(history.json?.error?.code, "rate_limited");
  assert.match(history.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
  // another user still resumes, and the honest member keeps getting every message
  const other = await connect(tight, room, { cid: "other", user: "other", since: count - 2, epoch });
  await settle(other, () => other.messages().length >= 2);
  assertExact(other, { messages: datas.slice(-2).map(textOf), from: count - 1 }, "another user's resume");
  await publisher.publish("end", "end");
  await honest.next((f) => f.type === "message" && f.data === "end");
  assertExact(honest, { messages: [...datas, "end"].map(textOf) }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, publisher, other].map((c) => c.close()));
});

test("MAX_CONNECTIONS_PER_USER: one user's extra socket is closed with 4410; other users connect", async () => {
  const room = roomName("per-user");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const hogs = [];
  for (let i = 0; i < PER_USER; i++) hogs.push(await connect(edge, room, { cid: `hog${i}`, user: "hog" }));
  const extra = await connect(edge, room, { cid: `hog${PER_USER}`, user: "hog" }, { welcome: false });
  assert.equal(await closeCode(extra), 4410, "the extra socket is refused");
  const carol = await connect(edge, room, { cid: "carol", user: "carol" });
  assert.equal(carol.welcome.user, "carol");
  await hogs[0].publish("h", "from a hog");
  await carol.publish("c", "from carol");
  await honest.next((f) => f.type === "message" && f.data === "from carol");
  assertExact(honest, { messages: ["from a hog", "from carol"].map(textOf) }, "honest member");
  for (const [i, h] of hogs.entries()) stillOpen(h, `hog ${i}`);
  stillOpen(honest, "the honest member");
  await Promise.all([honest, carol, ...hogs].map((c) => c.close()));
});

test("a user churning connections sends others at most about PRESENCE_RATE_PER_SEC presence frames; the view converges", {
  timeout: 90_000,
}, async () => {
  const room = roomName("presence-churn");
  const watcher = await connect(edge, room, { cid: "watcher", user: "watcher" });
  const start = Date.now();
  const anchor = await connect(edge, room, { cid: "churn-0", user: "churner" });
  const cycles = 30;
  for (let i = 1; i <= cycles; i++) {
    const c = await connect(edge, room, { cid: `churn-${i}`, user: "churner" });
    await c.close();
  }
  const churnerFrames = () => watcher.frames.filter((f) => f.type === "presence" && f.member?.user === "churner");
  // the truth: one connection (the anchor)
  const truth = (await api(edge, "GET", `/rooms/${room}/presence`)).json.members.find((m) => m.user === "churner");
  assert.equal(truth?.connections, 1);
  await until(() => churnerFrames().at(-1)?.member.connections === 1, { what: "the watcher's view to converge" });
  const elapsed = (Date.now() - start) / 1000;
  const frames = churnerFrames().length;
  // burst (at most 10) plus the rate over the time taken, with a little slack for timing
  const allowed = 10 + PRESENCE_RATE * elapsed + 2;
  assert.ok(
    frames <= allowed,
    `${frames} presence frames about one churning user in ${elapsed.toFixed(1)} s (allowed ${allowed.toFixed(1)})`,
  );
  assert.deepEqual(churnerFrames().at(-1).member, { user: "churner", connections: 1 }, "the final view is the truth");
  await anchor.publish("a", "from the anchor");
  await watcher.next((f) => f.type === "message" && f.data === "from the anchor");
  assertExact(watcher, { messages: [textOf("from the anchor")] }, "the watcher");
  stillOpen(watcher, "the watcher");
  await Promise.all([watcher, anchor].map((c) => c.close()));
});

test("pings that are not byte-exact count against the message rate", async () => {
  const room = roomName("ping-flood");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const pinger = await connect(edge, room, { cid: "pinger", user: "pinger" });
  const sent = 300;
  for (let i = 0; i < sent; i++) pinger.raw('{"type": "ping"}');
  const answered = () => pinger.frames.filter((f) => f.type === "pong" || f.type === "error").length;
  const outcome = await settle(pinger, () => answered() >= sent, 20_000);
  assert.ok(!outcome.timeout, `the pings were neither answered nor cut off: ${answered()} answers`);
  const pongs = pinger.frames.filter((f) => f.type === "pong").length;
  const limited = pinger.frames.filter((f) => f.type === "error" && f.code === "rate_limited").length;
  assert.ok(limited > 0, `no rate_limited error for ${sent} pings (${pongs} pongs)`);
  assert.ok(pongs < sent, `${pongs} pongs`);
  if (outcome.closed) assert.equal(outcome.closed.code, 4029);
  const calm = await connect(edge, room, { cid: "calm", user: "calm" });
  await calm.publish("c", "after the flood");
  await honest.next((f) => f.type === "message" && f.data === "after the flood");
  assertExact(honest, { messages: [textOf("after the flood")] }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, pinger, calm].map((c) => c.close()));
});

// --- 5. A direct answer without the presence right reveals nothing -------------------------------

test("direct without the presence right: the answer is the same for online and offline targets", async () => {
  const room = roomName("direct-leak");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const bob = await connect(edge, room, { cid: "bob-tab", user: "bob" });
  const snoop = await connect(edge, room, { cid: "snoop" }, { token: token("snoop", { [room]: ["subscribe", "publish"] }) });
  const targets = [
    ["online-user", { user: "bob" }],
    ["offline-user", { user: "ghost" }],
    ["online-cid", { clientId: "bob-tab" }],
    ["offline-cid", { clientId: "nobody" }],
  ];
  for (const [id, to] of targets) {
    snoop.send({ type: "direct", id, to, data: id });
    assert.deepEqual(await answerTo(snoop, id), { type: "ack", id }, `${id}: the answer reveals nothing`);
  }
  await until(() => bob.frames.filter((f) => f.type === "direct").length >= 2, { what: "bob's directs" });
  await bob.publish("b", "bob");
  await honest.next((f) => f.type === "message" && f.data === "bob");
  assertExact(bob, { directs: ["online-user", "online-cid"].map(textOf) }, "bob");
  assertExact(honest, { messages: [textOf("bob")] }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, bob, snoop].map((c) => c.close()));
});

// --- 6. Batch items must be objects -----------------------------------------------------------

test("HTTP batch items written as arrays get a 400 JSON error and store nothing", async () => {
  const room = roomName("batch-arrays");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  for (const body of ['[[1,"id"]]', '[{"data":1},[2,"x"]]', '[["only data"]]']) {
    const res = await api(edge, "POST", messagesPath(room), body);
    assert.equal(res.status, 400, `${body}: ${res.text}`);
    assert.equal(res.json?.error?.code, "bad_request", res.text);
  }
  assert.equal((await api(edge, "GET", `/rooms/${room}/stats`)).json.seq, 0, "nothing stored");
  assert.equal((await api(edge, "POST", messagesPath(room), [{ data: "good" }])).status, 200);
  await honest.next((f) => f.type === "message" && f.data === "good");
  assertExact(honest, { messages: [textOf("good")] }, "honest member");
  stillOpen(honest, "the honest member");
  await honest.close();
});

// --- 7. Token lifetime and removal by the backend -----------------------------------------------

test("token lifetime: an expired token's connection is closed with 4002; a refreshed one stays; another user's token does not refresh", {
  timeout: 60_000,
}, async () => {
  const room = roomName("expiry");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const now = Date.now();
  // exp 25 s ago: accepted within the 30 s leeway, and past it about 5 s after connecting
  const shortToken = (user, agoSeconds) => token(user, { [room]: ALL_RIGHTS }, { ttlSeconds: -agoSeconds, now });
  const exp = Math.floor(now / 1000) - 25;
  const stale = await connect(edge, room, { cid: "stale" }, { token: shortToken("stale", 25) });
  const later = await connect(edge, room, { cid: "later" }, { token: shortToken("later", 23) });
  const kept = await connect(edge, room, { cid: "kept" }, { token: shortToken("kept", 25) });
  assert.equal(kept.welcome.expires, exp * 1000, "the welcome tells when the token expires");

  kept.send({ type: "refresh", token: token("mallory", { [room]: ALL_RIGHTS }) });
  const refused = await kept.next((f) => f.type === "error" || f.type === "refreshed");
  assert.equal(refused.type, "error", "another user's token does not refresh this connection");
  assert.ok(["unauthorized", "forbidden"].includes(refused.code), refused.code);
  assert.equal(refused.id, undefined);
  kept.send({ type: "refresh", token: token("kept", { [room]: ALL_RIGHTS }) });
  const refreshed = await kept.next((f) => f.type === "refreshed" || f.type === "error");
  assert.equal(refreshed.type, "refreshed", JSON.stringify(refreshed));
  assert.ok(refreshed.expires > Date.now() + 3_000_000, `the new expiry: ${refreshed.expires}`);

  assert.equal(await closeCode(stale, 20_000), 4002, "the expired connection is closed");
  assert.ok(Date.now() >= (exp + 30) * 1000 - 500, "not before the token expired (with the leeway)");
  assert.equal(await closeCode(later, 20_000), 4002);
  // two seconds past the refreshed connection's old expiry, it still publishes as itself
  const ack = await kept.publish("k", "still here");
  assert.equal(ack.type, "ack", JSON.stringify(ack));
  stillOpen(kept, "the refreshed connection");
  const message = await honest.next((f) => f.type === "message" && f.data === "still here");
  assert.deepEqual([message.user, message.from], ["kept", "kept"], "the refused refresh did not change the identity");
  assertExact(honest, { messages: [textOf("still here")] }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, kept].map((c) => c.close()));
});

test("backend removal: POST /rooms/:room/kick closes a user's connections with 4411, bans for banSeconds; tokens cannot kick", async () => {
  const room = roomName("kick");
  const honest = await connect(edge, room, { cid: "honest", user: "honest" });
  const m1 = await connect(edge, room, { cid: "m1", user: "mallory" });
  const m2 = await connect(edge, room, { cid: "m2", user: "mallory" });
  const bob = await connect(edge, room, { cid: "bob", user: "bob" });
  const kick = (body, options) => api(edge, "POST", `/rooms/${room}/kick`, body, options);

  const byToken = await kick({ user: "mallory" }, { key: token("bob", { "*": ALL_RIGHTS }) });
  assert.ok([401, 403].includes(byToken.status), `a token may not kick: ${byToken.status} ${byToken.text}`);
  assert.ok(byToken.json?.error?.code, byToken.text);

  const bobOut = await kick({ user: "bob", reason: "testing" });
  assert.deepEqual([bobOut.status, bobOut.json], [200, { closed: 1 }], bobOut.text);
  assert.equal(await closeCode(bob), 4411);
  const banned = await kick({ user: "mallory", banSeconds: 60 });
  assert.deepEqual([banned.status, banned.json], [200, { closed: 2 }], banned.text);
  assert.equal(await closeCode(m1), 4411);
  assert.equal(await closeCode(m2), 4411);
  const again = await connect(edge, room, { cid: "m3", user: "mallory" }, { welcome: false });
  assert.equal(await closeCode(again), 4411, "a banned user's new connection is refused");
  assert.equal(again.frames.filter((f) => f.type === "message").length, 0);
  // the ban covers the HTTP API too: a banned user's token can neither publish nor read there
  const malloryKey = { key: token("mallory", { [room]: ALL_RIGHTS }) };
  const bannedPublish = await api(edge, "POST", `/rooms/${room}/messages`, { data: "let me in" }, malloryKey);
  assert.deepEqual([bannedPublish.status, bannedPublish.json?.error?.code], [403, "forbidden"], bannedPublish.text);
  const bannedRead = await api(edge, "GET", `/rooms/${room}/history?since=0`, undefined, malloryKey);
  assert.equal(bannedRead.status, 403, bannedRead.text);

  // bob was removed, not banned: he comes back; others were never affected
  const bobBack = await connect(edge, room, { cid: "bob", user: "bob" });
  await bobBack.publish("b", "bob is back");
  await honest.next((f) => f.type === "message" && f.data === "bob is back");
  assertExact(honest, { messages: [textOf("bob is back")] }, "honest member");
  stillOpen(honest, "the honest member");
  await Promise.all([honest, bobBack].map((c) => c.close()));
});
