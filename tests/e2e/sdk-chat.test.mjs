// The SDK's side of chat, cursors and typing (issue #15) against the real runtime (wrangler dev):
// rewind on join racing live publishes, history paging both ways to the ends, ephemeral
// broadcasts, and presence set at 60 Hz. The built package runs in headless Chromium (the browser
// paths of history and broadcast) and in Node on the `ws` package's WebSocket.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";
import { launchChromium, servePackage } from "../browser.mjs";
import { ALL_RIGHTS, api, roomName, sleep, startEdge, token, until } from "../harness.mjs";

const BROADCAST_MAX_BYTES = 2048;
const PRESENCE_RATE = 10;
let edge, browser, site, connect;
/** Every room a test opened in Node, closed after the tests even when one failed. */
const opened = [];
before(async () => {
  ({ connect } = await import("../../sdk/dist/index.js"));
  [edge, browser, site] = await Promise.all([
    startEdge({ vars: { UPGRADE_LIMITER: "", BROADCAST_MAX_BYTES, PRESENCE_RATE_PER_SEC: PRESENCE_RATE } }),
    launchChromium(),
    servePackage(),
  ]);
});
after(async () => {
  for (const r of opened) r.close();
  await Promise.all([edge?.stop(), browser?.close(), site?.close()]);
});

const FAST = { minReconnectDelayMs: 100, maxReconnectDelayMs: 500 };

async function fill(room, n, start = 1) {
  const body = Array.from({ length: n }, (_, i) => ({ id: `m${start + i}`, data: start + i }));
  const res = await api(edge, "POST", `/rooms/${room}/messages`, body);
  assert.equal(res.status, 200, res.text);
}

const roomSeq = async (room) => (await api(edge, "GET", `/rooms/${room}/stats`)).json.seq;

/**
 * The package in Node, on `ws`: events recorded in order (`log.all`), every frame received and
 * every socket opened kept (`frames`, `sockets`), through the `logger` option.
 */
function nodeClient(room, user, { meta, ...options } = {}) {
  const sockets = [];
  class Recorded extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const frames = [];
  const sent = [];
  const logger = (kind, detail) => {
    if (kind === "receive") for (const line of detail.split("\n")) frames.push(JSON.parse(line));
    if (kind === "send") sent.push(JSON.parse(detail));
  };
  const t = token(user, { [room]: ALL_RIGHTS }, { meta });
  const r = connect({ url: edge.wsUrl, room, token: t, clientId: `c-${user}`, WebSocket: Recorded, logger, ...FAST, ...options });
  opened.push(r);
  const log = { all: [], message: [], presence: [], broadcast: [], status: [], gap: [], error: [] };
  for (const e of Object.keys(log).filter((k) => k !== "all"))
    r.on(e, (p) => {
      log[e].push(p);
      log.all.push([e, p]);
    });
  return { room: r, log, frames, sent, sockets, opened: until(() => r.state === "open", { what: `${user} open` }) };
}

/** A Chromium page with the package as `window.roomcast` and one room as `window.room`. */
async function browserClient(room, user, options = {}) {
  const page = await browser.newPage();
  // every WebSocket the page opens, so a test can drop one under the SDK
  await page.addInitScript(() => {
    window.sockets = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...a) {
        super(...a);
        window.sockets.push(this);
      }
    };
  });
  await page.goto(site.url);
  await page.waitForFunction(() => window.ready === true);
  const t = token(user, { [room]: ALL_RIGHTS });
  await page.evaluate(
    ({ url, room, t, user, options }) => {
      window.log = { all: [], message: [], broadcast: [], presence: [], status: [], gap: [], error: [] };
      window.room = window.roomcast.connect({ url, room, token: t, clientId: `c-${user}`, ...options });
      for (const e of Object.keys(window.log).filter((k) => k !== "all")) {
        window.room.on(e, (p) => {
          window.log[e].push(p);
          window.log.all.push([e, p]);
        });
      }
    },
    { url: edge.wsUrl, room, t, user, options: { ...FAST, ...options } },
  );
  await page.waitForFunction(() => window.room.state === "open");
  return page;
}

const contiguous = (seqs) => seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1);

test("rewind: the last N stored messages as message events, then live ones, with no gap or duplicate while publishes race the join", async () => {
  const room = roomName("sdk-rewind");
  await fill(room, 20);
  const publisher = nodeClient(room, "pub");
  await publisher.opened;
  let racing = true;
  let n = 0;
  // Paced at about 40 a second, inside the room's message rate (50/s, burst 100): unpaced, a fast
  // runtime acks quickly enough for one publisher to run into rate_limited.
  const race = (async () => {
    while (racing) {
      await publisher.room.publish({ live: ++n });
      await sleep(25);
    }
  })();
  // joiners arrive one by one while the publisher keeps the room busy
  const joiners = [];
  for (let i = 0; i < 4; i++) {
    joiners.push(nodeClient(room, `j${i}`, { rewind: 5 }));
    await sleep(40);
  }
  await Promise.all(joiners.map((j) => j.opened));
  await sleep(100);
  racing = false;
  await race;
  assert.ok(n >= 5, `the publisher raced the joins (${n} publishes)`);
  const last = await roomSeq(room);
  const stored = new Map((await api(edge, "GET", `/rooms/${room}/history?since=0&limit=1000`)).json.messages.map((m) => [m.seq, m]));
  for (const [i, j] of joiners.entries()) {
    await until(() => j.room.lastSeq === last, { what: `joiner ${i} reached ${last}` });
    const w = j.frames.find((f) => f.type === "welcome");
    assert.equal(w.rewind.replayed, 5, `joiner ${i}: five rewound`);
    const seqs = j.log.message.map((m) => m.seq);
    assert.equal(seqs[0], w.seq - 4, `joiner ${i} starts with the fifth-newest message at its join`);
    assert.equal(seqs.at(-1), last);
    assert.ok(contiguous(seqs), `joiner ${i}: no gap or duplicate: ${seqs.join(",")}`);
    for (const m of j.log.message) {
      assert.deepEqual(m.data, stored.get(m.seq).data, `seq ${m.seq} is the stored message`);
      assert.equal(m.id, stored.get(m.seq).id, "with the publisher's id");
    }
    assert.deepEqual([j.log.gap, j.log.error], [[], []]);
  }
  for (const c of [publisher, ...joiners]) c.room.close();
});

test("history from the browser: pages back to the first message and forward to the last, in seq order, with ids; never as live messages", async () => {
  const room = roomName("sdk-history");
  await fill(room, 23);
  const page = await browserClient(room, "reader");
  const got = await page.evaluate(async () => {
    const back = [];
    const backPages = [];
    let before;
    for (;;) {
      const p = await window.room.history(before === undefined ? { limit: 5 } : { limit: 5, before });
      backPages.push([p.messages.map((m) => m.seq), p.more]);
      back.unshift(...p.messages);
      if (!p.more) break;
      before = p.messages[0].seq;
    }
    const forward = [];
    let since = 0;
    for (;;) {
      const p = await window.room.history({ limit: 7, since });
      forward.push(...p.messages);
      if (!p.more) break;
      since = p.messages.at(-1).seq;
    }
    const latest = await window.room.history();
    return {
      back: back.map((m) => [m.seq, m.id, m.data]),
      backPages,
      forward: forward.map((m) => m.seq),
      latest: latest.messages.length,
      first: back[0],
    };
  });
  const all = Array.from({ length: 23 }, (_, i) => i + 1);
  assert.deepEqual(
    got.back,
    all.map((s) => [s, `m${s}`, s]),
  );
  assert.deepEqual(
    got.backPages.map(([s]) => s.length),
    [5, 5, 5, 5, 3],
  );
  assert.deepEqual(
    got.backPages.map(([, more]) => more),
    [true, true, true, true, false],
  );
  assert.deepEqual(got.backPages[0][0], [19, 20, 21, 22, 23], "the latest page first");
  assert.deepEqual(got.forward, all);
  assert.equal(got.latest, 23, "the default page (100) holds them all");
  assert.deepEqual(Object.keys(got.first).sort(), ["data", "from", "id", "seq", "ts", "user"]);
  assert.deepEqual(await page.evaluate(() => [window.log.message.length, window.room.lastSeq]), [0, 23], "pages are not live messages");

  // live messages carry the publisher's id: the SDK's own (as history shows it) and the API's
  const writer = await browserClient(room, "writer");
  const seq = await writer.evaluate(() => window.room.publish({ text: "from the sdk" }));
  await api(edge, "POST", `/rooms/${room}/messages`, { id: "from-api", data: "api" });
  await page.waitForFunction(() => window.log.message.length === 2);
  const live = await page.evaluate(() => window.log.message.map((m) => [m.seq, m.id]));
  const [stored] = (await api(edge, "GET", `/rooms/${room}/history?since=${seq - 1}&limit=1`)).json.messages;
  assert.match(stored.id, /^[a-z2-9]{10}-\d+$/);
  assert.deepEqual(live, [
    [seq, stored.id],
    [seq + 1, "from-api"],
  ]);

  // not open: rejected at once (not queued); closed: rejected
  const refused = await page.evaluate(
    async ({ url }) => {
      const r = window.roomcast.connect({ url, room: "sdk-history-offline" });
      const early = await r.history().catch((e) => [e.name, e.code]);
      r.close();
      const late = await r.history().catch((e) => [e.name, e.code]);
      return [early, late];
    },
    { url: edge.wsUrl },
  );
  assert.deepEqual(refused, [
    ["RoomcastError", "offline"],
    ["RoomcastError", "closed"],
  ]);
  await Promise.all([page.close(), writer.close()]);
});

test("broadcasts from the browser: delivered in order with stored messages, never stored or replayed, not to members who join later", async () => {
  const room = roomName("sdk-broadcast");
  const alice = await browserClient(room, "alice");
  const bob = await browserClient(room, "bob");
  const echo = await browserClient(room, "echo", { echo: true });
  await alice.evaluate(async () => {
    await window.room.publish({ text: "first" });
    await window.room.broadcast({ typing: true });
    await window.room.publish({ text: "second" });
  });
  await bob.waitForFunction(() => window.room.lastSeq === 2 && window.log.broadcast.length === 1);
  const order = await bob.evaluate(() =>
    window.log.all.filter(([e]) => e === "message" || e === "broadcast").map(([e, p]) => [e, p.seq ?? p.data]),
  );
  assert.deepEqual(
    order,
    [
      ["message", 1],
      ["broadcast", { typing: true }],
      ["message", 2],
    ],
    "the broadcast keeps its place among stored messages",
  );
  const b = await bob.evaluate(() => window.log.broadcast[0]);
  assert.deepEqual([b.from, b.user, b.data, typeof b.ts], ["c-alice", "alice", { typing: true }, "number"]);
  assert.equal(await alice.evaluate(() => window.log.broadcast.length), 0, "echo off: not to the sender");
  await echo.evaluate(() => window.room.broadcast("mine"));
  await echo.waitForFunction(() => window.log.broadcast.some((x) => x.data === "mine"));
  await bob.waitForFunction(() => window.log.broadcast.length === 2);

  // never stored: history and the room's seq hold the two messages only
  const history = (await api(edge, "GET", `/rooms/${room}/history?since=0`)).json.messages;
  assert.deepEqual(
    history.map((m) => m.data),
    [{ text: "first" }, { text: "second" }],
  );
  assert.equal(await roomSeq(room), 2);
  // a member who joins later (asking for everything stored) gets the messages and no broadcast
  const carol = await browserClient(room, "carol", { rewind: 100 });
  await carol.waitForFunction(() => window.log.message.length === 2);
  // never replayed: bob's connection drops and resumes; then a new message
  await bob.evaluate(() => window.sockets.at(-1).close(3000, "test drop"));
  await bob.waitForFunction(() => window.room.state === "reconnecting" || window.sockets.length > 1);
  await bob.waitForFunction(() => window.room.state === "open" && window.sockets.length === 2);
  await alice.evaluate(() => window.room.publish({ text: "third" }));
  await bob.waitForFunction(() => window.room.lastSeq === 3);
  await carol.waitForFunction(() => window.room.lastSeq === 3);
  assert.deepEqual(await bob.evaluate(() => [window.log.message.map((m) => m.seq), window.log.broadcast.length]), [[1, 2, 3], 2]);
  assert.deepEqual(await carol.evaluate(() => [window.log.message.map((m) => m.seq), window.log.broadcast.length]), [[1, 2, 3], 0]);

  // over the room's broadcast limit (from the welcome): refused by the SDK, never sent
  const big = await alice.evaluate(() => window.room.broadcast("x".repeat(3000)).catch((e) => [e.code, e.message]));
  assert.equal(big[0], "too_large");
  assert.match(big[1], new RegExp(`over the room's limit \\(${BROADCAST_MAX_BYTES} bytes\\); it was not sent`));
  // not open: rejected, not queued
  const offline = await alice.evaluate(
    async ({ url }) => {
      const r = window.roomcast.connect({ url, room: "sdk-broadcast-offline" });
      const e = await r.broadcast(1).catch((x) => x.code);
      r.close();
      return e;
    },
    { url: edge.wsUrl },
  );
  assert.equal(offline, "offline");
  assert.equal(await bob.evaluate(() => window.log.broadcast.length), 2, "nothing else reached bob");
  await Promise.all([alice, bob, echo, carol].map((p) => p.close()));
});

test("presence set in a 60 Hz loop: every call resolves, the others see it coalesced, members() ends at the last meta, and a reconnect restores it", async (t) => {
  const room = roomName("sdk-presence");
  const alice = nodeClient(room, "alice", { meta: { name: "Alice" } });
  const bob = nodeClient(room, "bob");
  await Promise.all([alice.opened, bob.opened]);
  await until(() => bob.room.members().some((m) => m.user === "alice"));
  const aliceMeta = () => bob.room.members().find((m) => m.user === "alice")?.meta;
  const updates = () => bob.log.presence.filter((p) => p.updated.some((m) => m.user === "alice")).length;
  const before = updates();
  const calls = [];
  const started = Date.now();
  await new Promise((resolve) => {
    let i = 0;
    const timer = setInterval(() => {
      calls.push(alice.room.setPresence({ name: "Alice", cursor: [i, i * 2] }));
      if (++i === 120) {
        clearInterval(timer);
        resolve();
      }
    }, 1000 / 60);
  });
  await Promise.all(calls);
  await until(() => aliceMeta()?.cursor?.[0] === 119, { what: "bob sees the last cursor" });
  const seconds = (Date.now() - started) / 1000;
  const seen = updates() - before;
  const sent = alice.sent.filter((f) => f.type === "presence").length;
  // the room's bound: PRESENCE_RATE_PER_SEC frames per second per member, burst twice that
  const bound = Math.ceil(2 * PRESENCE_RATE + PRESENCE_RATE * seconds) + 1;
  t.diagnostic(
    `120 setPresence calls in ${seconds.toFixed(2)} s: ${sent} frames sent, ${seen} updates about alice received (bound ${bound})`,
  );
  assert.ok(seen <= bound, `${seen} updates about alice in ${seconds.toFixed(1)} s; at most ${bound}`);
  assert.ok(seen < 120, "coalesced");
  assert.ok(sent <= 120, `alice sent ${sent} presence frames for 120 calls`);
  assert.deepEqual(aliceMeta(), { name: "Alice", cursor: [119, 238] });
  assert.deepEqual(
    alice.room.members().find((m) => m.user === "alice")?.meta,
    { name: "Alice", cursor: [119, 238] },
    "alice's own list too",
  );
  assert.deepEqual([alice.log.error, bob.log.error], [[], []]);

  // alice's connection drops: the new one starts with the token's meta, and the SDK sends the last again
  const sentBefore = alice.sent.filter((f) => f.type === "presence").length;
  alice.sockets.at(-1).terminate();
  await until(() => alice.sockets.length === 2 && alice.room.state === "open", { what: "alice reconnected" });
  await until(() => alice.sent.filter((f) => f.type === "presence").length === sentBefore + 1, { what: "the meta sent again" });
  await until(() => aliceMeta()?.cursor?.[0] === 119 && bob.room.members().find((m) => m.user === "alice")?.connections === 1, {
    what: "bob sees it restored",
  });
  // and a member who joins now sees it in the welcome's list
  const carol = nodeClient(room, "carol");
  await carol.opened;
  assert.deepEqual(carol.room.members().find((m) => m.user === "alice")?.meta, { name: "Alice", cursor: [119, 238] });
  for (const c of [alice, bob, carol]) c.room.close();
});
