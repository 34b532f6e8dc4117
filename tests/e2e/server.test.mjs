// roomcast/server against the real local edge (wrangler dev), as a backend gets it: the sdk
// package packed with `npm pack` and installed into an empty project, imported as
// "roomcast/server". Tokens it mints are accepted by the edge, every HTTP API call it makes
// (publish single and batch, history with since and before, presence, stats, kick) reaches the
// room, and refusals come back as RoomcastErrors. Also the local webhook receiver
// (`npm run demo:webhooks`), fed requests signed by the standardwebhooks package.
//
// requeueWebhooks, deleteHistory and verifyWebhook on the room's own deliveries are tested in
// webhooks-basic.test.mjs, next to a receiver.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Webhook } from "standardwebhooks";
import { devVar, mintToken as mintTokenTool } from "../../tools/token.mjs";
import { ALL_RIGHTS, apiKey, Client, ROOT, roomName, startEdge, tempDir } from "../harness.mjs";

let edge, server, rc, project;
const rejection = (promise) =>
  promise.then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e) => e,
  );

before(async () => {
  const packDir = tempDir("server-pack");
  const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });
  const [{ filename, files }] = JSON.parse(npm(["pack", join(ROOT, "sdk"), "--pack-destination", packDir, "--json"], ROOT));
  const paths = files.map((f) => f.path);
  for (const f of ["server/index.mjs", "server/index.d.ts", "dist/index.js"]) assert.ok(paths.includes(f), `${f} not packed: ${paths}`);
  project = tempDir("server-app");
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "backend", private: true, type: "module" }));
  writeFileSync(join(project, "backend.mjs"), `export * from "roomcast/server";\n`);
  [edge] = await Promise.all([
    // a low HTTP publish rate, for the 429 test (the burst is at least one batch: 100)
    startEdge({ vars: { HTTP_RATE_MESSAGES_PER_SEC: "1", HTTP_RATE_MESSAGES_BURST: "1" } }),
    Promise.resolve().then(() => npm(["install", join(packDir, filename)], project)),
  ]);
  server = await import(join(project, "backend.mjs"));
  rc = server.createClient({ url: edge.url, apiKey: apiKey() });
});
after(async () => {
  await edge?.stop();
});

const secret = () => devVar("ROOMCAST_SECRET");

test("a token from mintToken connects, and is the one tools/token.mjs mints", async () => {
  const room = roomName("srv-token");
  const now = Date.now();
  const options = { secret: secret(), user: "alice", rooms: { [room]: ALL_RIGHTS }, ttlSeconds: 600, meta: { name: "Alice" }, now };
  const token = await server.mintToken(options);
  assert.equal(token, mintTokenTool(options));
  const alice = await Client.connect(edge, room, { cid: "a1" }, { token });
  assert.equal(alice.welcome.type, "welcome");
  assert.deepEqual((await rc.presence(room)).members, [{ user: "alice", connections: 1, meta: { name: "Alice" } }]);
  // the token is also a credential for the HTTP API where its rights allow, acting as its user
  const asAlice = server.createClient({ url: edge.url, apiKey: token });
  const { seq } = await asAlice.publish(room, { text: "from alice's token" });
  const live = await alice.next((f) => f.type === "message" && f.seq === seq);
  assert.deepEqual([live.user, live.from], ["alice", ":http"]);
  // stats are the API key's: a valid token is 403, a token signed with another secret 401
  const forbidden = await rejection(asAlice.stats(room));
  assert.ok(forbidden instanceof server.RoomcastError);
  assert.deepEqual([forbidden.status, forbidden.code], [403, "forbidden"]);
  const forged = server.createClient({ url: edge.url, apiKey: await server.mintToken({ ...options, secret: "not the secret" }) });
  const refused = await rejection(forged.history(room));
  assert.deepEqual([refused.status, refused.code], [401, "unauthorized"]);
  await alice.close();
});

test("publish and publishBatch: stored, numbered, delivered; ids make them idempotent", async () => {
  const room = roomName("srv-publish");
  const watcher = await Client.connect(edge, room, { cid: "w", user: "watcher" });
  assert.deepEqual(await rc.publish(room, { text: "one" }), { seq: 1 });
  assert.deepEqual(await rc.publish(room, { text: "two" }, { id: "job-2" }), { seq: 2, id: "job-2" });
  assert.deepEqual(await rc.publish(room, { text: "two again" }, { id: "job-2" }), { seq: 2, id: "job-2", duplicate: true });
  assert.deepEqual(await rc.publish(room, null), { seq: 3 });
  const batch = await rc.publishBatch(room, [
    { data: { n: 4 } },
    { data: { n: 5 }, id: "b-5" },
    { data: { n: "dup" }, id: "job-2" },
    { data: { n: 6 }, id: "b-5" },
  ]);
  assert.deepEqual(batch, {
    messages: [{ seq: 4 }, { seq: 5, id: "b-5" }, { seq: 2, id: "job-2", duplicate: true }, { seq: 5, id: "b-5", duplicate: true }],
  });
  await watcher.next((f) => f.type === "message" && f.seq === 5);
  assert.deepEqual(
    watcher.messages().map((m) => [m.seq, m.user, m.from, m.data, m.id]),
    [
      [1, ":api", ":api", { text: "one" }, undefined],
      [2, ":api", ":api", { text: "two" }, "job-2"],
      [3, ":api", ":api", null, undefined],
      [4, ":api", ":api", { n: 4 }, undefined],
      [5, ":api", ":api", { n: 5 }, "b-5"],
    ],
  );
  await watcher.close();
});

test("history: since, before (paging back to the start), limit, more; the epoch of stats", async () => {
  const room = roomName("srv-history");
  await rc.publishBatch(
    room,
    Array.from({ length: 12 }, (_, i) => ({ data: { n: i + 1 }, id: `h-${i + 1}` })),
  );
  const all = await rc.history(room);
  assert.equal(all.seq, 12);
  assert.equal(all.more, false);
  assert.deepEqual(
    all.messages.map((m) => m.seq),
    Array.from({ length: 12 }, (_, i) => i + 1),
  );
  const m = all.messages[0];
  assert.deepEqual([m.type, m.user, m.from, m.id, m.data, typeof m.ts], ["message", ":api", ":api", "h-1", { n: 1 }, "number"]);
  const since = await rc.history(room, { since: 9, limit: 2 });
  assert.deepEqual([since.messages.map((x) => x.seq), since.more], [[10, 11], true]);
  // paging back from the newest, as a chat does on scrolling up
  const pages = [];
  let page = await rc.history(room, { before: 13, limit: 5 });
  for (;;) {
    pages.push(page.messages.map((x) => x.seq));
    if (!page.more) break;
    page = await rc.history(room, { before: page.messages[0].seq, limit: 5 });
  }
  assert.deepEqual(pages, [
    [8, 9, 10, 11, 12],
    [3, 4, 5, 6, 7],
    [1, 2],
  ]);
  const stats = await rc.stats(room);
  assert.equal(stats.epoch, all.epoch);
  assert.deepEqual([stats.seq, stats.history, stats.oldest, stats.connections], [12, 12, 1, 0]);
  assert.equal(typeof stats.countersSince, "number");
  // the room's own refusal comes back with its message: an empty room's history is fine, a bad
  // option is refused before sending
  assert.deepEqual((await rc.history(roomName("srv-empty"))).messages, []);
  await assert.rejects(rc.history(room, { since: 1, before: 5 }), TypeError);
});

test("presence and kick: members with their meta; a kick closes with 4411 and a ban refuses the user's token", async () => {
  const room = roomName("srv-kick");
  const bob = await Client.connect(edge, room, { cid: "b1", user: "bob", meta: '{"name":"Bob"}' });
  const bob2 = await Client.connect(edge, room, { cid: "b2", user: "bob", meta: '{"name":"Bob"}' });
  const carol = await Client.connect(edge, room, { cid: "c1", user: "carol" });
  assert.deepEqual((await rc.presence(room)).members, [
    { user: "bob", connections: 2, meta: { name: "Bob" } },
    { user: "carol", connections: 1 },
  ]);
  assert.deepEqual(await rc.kick(room, { user: "bob", banSeconds: 600, reason: "spam" }), { closed: 2 });
  assert.deepEqual([(await bob.closed).code, (await bob2.closed).code], [4411, 4411]);
  const asBob = server.createClient({
    url: edge.url,
    apiKey: await server.mintToken({ secret: secret(), user: "bob", rooms: { [room]: ALL_RIGHTS } }),
  });
  const banned = await rejection(asBob.publish(room, "let me back"));
  assert.deepEqual([banned.status, banned.code], [403, "forbidden"]);
  assert.deepEqual(await rc.kick(room, { user: "nobody" }), { closed: 0 });
  // a body the edge refuses comes back as bad_request with the edge's message
  const bad = await rejection(rc.kick(room, { user: "carol", banSeconds: 30 * 86400 + 1 }));
  assert.deepEqual([bad.status, bad.code], [400, "bad_request"]);
  assert.match(bad.message, /^roomcast: POST \/rooms\/srv-kick-.*\/kick: 400 ./);
  assert.equal(carol.ws.readyState, 1, "carol stays");
  await carol.close();
});

test("refusals: a wrong API key is 401, data over the frame limit 413, over the HTTP rate 429 with retryAfter", async () => {
  const room = roomName("srv-refusals");
  const wrong = server.createClient({ url: edge.url, apiKey: "not-the-key" });
  const e401 = await rejection(wrong.publish(room, 1));
  assert.deepEqual([e401.name, e401.status, e401.code, e401.retryAfter], ["RoomcastError", 401, "unauthorized", undefined]);
  const e413 = await rejection(rc.publish(room, "x".repeat(70_000)));
  assert.deepEqual([e413.status, e413.code], [413, "too_large"]);
  // the burst is one batch (100 messages) at 1 message/s: the second batch is over it
  const full = Array.from({ length: 100 }, (_, i) => ({ data: i }));
  assert.equal((await rc.publishBatch(room, full)).messages.length, 100);
  const e429 = await rejection(rc.publishBatch(room, full));
  assert.deepEqual([e429.status, e429.code], [429, "rate_limited"]);
  assert.ok(Number.isInteger(e429.retryAfter) && e429.retryAfter >= 1, `retryAfter ${e429.retryAfter}`);
  // nothing of the refused batch was stored
  assert.equal((await rc.stats(room)).seq, 100);
});

test("no edge listening: a network RoomcastError, status 0", async () => {
  const down = server.createClient({ url: "http://127.0.0.1:9", apiKey: "k" });
  const e = await rejection(down.stats("r"));
  assert.deepEqual([e.name, e.status, e.code], ["RoomcastError", 0, "network"]);
  assert.ok(e.cause instanceof Error);
});

test("in a Worker (workerd, no Node globals): mintToken, verifyWebhook and createClient against the edge", async () => {
  // The package's module as it is packed, run by the Workers runtime through miniflare (the
  // one wrangler uses): no node: modules, no process, no Buffer there.
  const { Miniflare } = await import("miniflare");
  const room = roomName("srv-worker");
  const key = `whsec_${randomBytes(24).toString("base64")}`;
  const body = JSON.stringify({ events: [{ id: "evt_00000000000000bb_1", type: "room.vacated", room, ts: 1795291934172 }] });
  const at = new Date();
  const headers = { "webhook-id": "batch_evt_00000000000000bb_1_1", "webhook-timestamp": String(Math.floor(at.getTime() / 1000)) };
  headers["webhook-signature"] = new Webhook(key).sign(headers["webhook-id"], at, body);
  const input = {
    edge: edge.url,
    apiKey: apiKey(),
    room,
    key,
    body,
    headers,
    token: { secret: "s3cret", user: "wanda", rooms: { [room]: ["subscribe"] }, meta: { n: "é" }, now: 1_795_291_934_172 },
  };
  const worker = `import { createClient, mintToken, verifyWebhook, WebhookVerificationError } from "./server/index.mjs";
export default {
  async fetch(request) {
    const input = await request.json();
    const out = { process: typeof process, buffer: typeof Buffer };
    out.token = await mintToken(input.token);
    out.verified = await verifyWebhook(input.body, new Headers(input.headers), input.key);
    out.tampered = await verifyWebhook(input.body + " ", input.headers, input.key).then(() => "accepted", (e) => e instanceof WebhookVerificationError && e.code);
    const rc = createClient({ url: input.edge, apiKey: input.apiKey });
    out.published = await rc.publish(input.room, { from: "a worker" }, { id: "w-1" });
    out.history = (await rc.history(input.room)).messages.map((m) => [m.seq, m.data, m.id]);
    out.refused = await createClient({ url: input.edge, apiKey: "wrong" }).stats(input.room).then(() => "accepted", (e) => [e.name, e.status, e.code]);
    return Response.json(out);
  },
};`;
  const packed = join(project, "node_modules", "roomcast", "server", "index.mjs");
  const mf = new Miniflare({
    modulesRoot: "/w",
    modules: [
      { type: "ESModule", path: "/w/worker.mjs", contents: worker },
      { type: "ESModule", path: "/w/server/index.mjs", contents: readFileSync(packed, "utf8") },
    ],
    compatibilityDate: "2025-01-01",
  });
  try {
    const res = await mf.dispatchFetch("http://worker/", { method: "POST", body: JSON.stringify(input) });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const out = JSON.parse(text);
    assert.deepEqual([out.process, out.buffer], ["undefined", "undefined"]);
    assert.equal(out.token, mintTokenTool(input.token));
    assert.deepEqual(out.verified, JSON.parse(body));
    assert.equal(out.tampered, "bad_signature");
    assert.deepEqual(out.published, { seq: 1, id: "w-1" });
    assert.deepEqual(out.history, [[1, { from: "a worker" }, "w-1"]]);
    assert.deepEqual(out.refused, ["RoomcastError", 401, "unauthorized"]);
  } finally {
    await mf.dispose();
  }
});

// The README tutorial's server.mjs and publish.mjs, as written and from a folder outside the
// clone: tests/e2e/tutorial.test.mjs.

// requeueWebhooks and deleteHistory against the edge, with real deliveries: webhooks-basic.test.mjs.

// --- the local receiver (npm run demo:webhooks) ---------------------------------------------------

/** Runs demo/webhooks/receiver.mjs on a free port; collects its output lines. */
async function startReceiver(env) {
  const child = spawn(process.execPath, [join(ROOT, "demo", "webhooks", "receiver.mjs")], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: [], stderr: [] };
  const waiters = [];
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  for (const stream of ["stdout", "stderr"]) {
    let rest = "";
    child[stream].on("data", (d) => {
      const lines = (rest + d).split("\n");
      rest = lines.pop();
      out[stream].push(...lines);
      for (const w of [...waiters]) w();
    });
  }
  /** Resolves once `stream` has `count` lines (or the process exited: then the lines so far). */
  const lines = (stream, count) =>
    new Promise((resolve) => {
      const check = () => {
        if (out[stream].length < count) return false;
        waiters.splice(waiters.indexOf(check), 1);
        resolve(out[stream].slice(0, count));
        return true;
      };
      waiters.push(check);
      check();
      exited.then(() => resolve(out[stream]));
    });
  const [banner] = await lines("stdout", 1);
  const port = Number(/http:\/\/127\.0\.0\.1:(\d+)\//.exec(banner ?? "")?.[1]);
  assert.ok(port > 0, `no listening line: ${banner} ${out.stderr.join("\n")}`);
  return {
    url: `http://127.0.0.1:${port}/`,
    out,
    lines,
    exited,
    stop: () => {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

test("the receiver verifies, prints one line per event and answers 204; 401 for a bad signature or an old timestamp", async () => {
  const key = `whsec_${randomBytes(24).toString("base64")}`;
  const receiver = await startReceiver({ WEBHOOK_SECRET: key });
  try {
    const signer = new Webhook(key);
    const events = [
      { id: "evt_00000000000000aa_1", type: "room.occupied", room: "demo:lobby", ts: 1795291934172 },
      {
        id: "evt_00000000000000aa_2",
        type: "presence.joined",
        room: "demo:lobby",
        ts: 1795291934173,
        user: "alice",
        meta: { name: "Alice" },
      },
      {
        id: "evt_00000000000000aa_3",
        type: "message.published",
        room: "demo:lobby",
        ts: 1795291934180,
        epoch: "07cb",
        seq: 1,
        from: "tab-1",
        user: "alice",
        data: { text: "hi" },
        messageId: "m-1",
      },
    ];
    const post = (body, { id = "batch_evt_00000000000000aa_1_3", at = new Date(), headers = {}, signed = body } = {}) =>
      fetch(receiver.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "webhook-id": id,
          "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
          "webhook-signature": signer.sign(id, at, signed),
          ...headers,
        },
        body,
      });
    const body = JSON.stringify({ events });
    assert.equal((await post(body)).status, 204);
    const printed = await receiver.lines("stdout", 4);
    assert.equal(printed.length, 4, receiver.out.stderr.join("\n"));
    assert.match(printed[1], /^\d\d:\d\d:\d\d\.\d{3} room\.occupied +demo:lobby evt_00000000000000aa_1$/);
    assert.match(printed[2], /presence\.joined +demo:lobby \{"user":"alice","meta":\{"name":"Alice"\}\} evt_00000000000000aa_2$/);
    assert.match(
      printed[3],
      /message\.published +demo:lobby \{"epoch":"07cb","seq":1,"from":"tab-1","user":"alice","data":\{"text":"hi"\},"messageId":"m-1"\} evt_00000000000000aa_3$/,
    );
    // tampered, old, signed with another key, unsigned: 401 and a line on stderr, no event printed
    const other = new Webhook(`whsec_${randomBytes(24).toString("base64")}`);
    const at = new Date();
    const refusals = [
      await post(body.replace("alice", "mallory"), { signed: body }),
      await post(body, { at: new Date(Date.now() - 3_600_000) }),
      await post(body, {
        headers: {
          "webhook-signature": other.sign("batch_evt_00000000000000aa_1_3", at, body),
          "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
        },
      }),
      await fetch(receiver.url, { method: "POST", body }),
    ];
    assert.deepEqual(
      refusals.map((r) => r.status),
      [401, 401, 401, 401],
    );
    const warned = await receiver.lines("stderr", 4);
    assert.deepEqual(
      warned.map((l) => /^refused: 401 (\w+)/.exec(l)?.[1]),
      ["bad_signature", "timestamp_too_old", "bad_signature", "missing_header"],
    );
    assert.equal((await fetch(receiver.url)).status, 405);
    // a redelivery (the same event ids again) is printed and marked
    assert.equal((await post(JSON.stringify({ events: [events[0]] }), { id: "batch_evt_00000000000000aa_1_1" })).status, 204);
    const [, , , , again] = await receiver.lines("stdout", 5);
    assert.match(again, /room\.occupied +demo:lobby evt_00000000000000aa_1 \(again: a redelivery\)$/);
    assert.equal(receiver.out.stdout.length, 5, "no line for a refused request");
  } finally {
    assert.equal(await receiver.stop(), 0);
  }
});

test("the receiver refuses to start without a secret, or with one that is not whsec_ + base64", async () => {
  // an empty WEBHOOK_SECRET falls back to .dev.vars: run it only where .dev.vars has none
  const bad = await startReceiverExpectingExit({ WEBHOOK_SECRET: "whsec_not base64!" });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /secret must be whsec_ \+ base64/);
  if (!devVar("WEBHOOK_SECRET")) {
    const none = await startReceiverExpectingExit({ WEBHOOK_SECRET: "" });
    assert.equal(none.code, 2);
    assert.match(
      none.stderr,
      /no WEBHOOK_SECRET[\s\S]*WEBHOOK_URL=http:\/\/127\.0\.0\.1:8788\/\n[\s\S]*WEBHOOK_SECRET=whsec_[A-Za-z0-9+/]{32}\n/,
    );
  }
});

function startReceiverExpectingExit(env) {
  const child = spawn(process.execPath, [join(ROOT, "demo", "webhooks", "receiver.mjs")], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stderr })));
}
