// The browser SDK, built as the npm package, in headless Chromium against the local runtime.
import assert from "node:assert/strict";
import { createServer, connect as tcpConnect } from "node:net";
import { after, before, test } from "node:test";
import { launchChromium, servePackage } from "../browser.mjs";
import { ALL_RIGHTS, api, roomName, startEdge, tempDir, token, until } from "../harness.mjs";

let edge, browser, site;
const persistDir = tempDir("sdk");
before(async () => {
  [edge, browser, site] = await Promise.all([startEdge({ persistDir }), launchChromium(), servePackage()]);
});
after(async () => {
  await Promise.all([edge?.stop(), browser?.close(), site?.close()]);
});

const FAST = { minReconnectDelayMs: 100, maxReconnectDelayMs: 1000, pingIntervalMs: 1000, pongTimeoutMs: 1000 };

/** A page with the package loaded as `window.roomcast`. */
async function blankPage() {
  const page = await browser.newPage();
  await page.goto(site.url);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

/** A page with the package loaded and one room connected as `window.room`, recording events. */
async function openPage(room, user, { url = edge.wsUrl, options = {} } = {}) {
  const page = await blankPage();
  const t = token(user, { [room]: ALL_RIGHTS }, { meta: { name: user } });
  await page.evaluate(
    ({ url, room, t, user, options }) => {
      window.log = { message: [], presence: [], status: [], gap: [], error: [] };
      window.room = window.roomcast.connect({ url, room, token: t, clientId: `c-${user}`, ...options });
      for (const e of Object.keys(window.log)) window.room.on(e, (p) => window.log[e].push(p));
    },
    { url, room, t, user, options },
  );
  await page.waitForFunction(() => window.room.state === "open");
  return page;
}

const seqs = (page) => page.evaluate(() => window.log.message.map((m) => m.seq));

test("connect, publish, receive and presence from the built package", async () => {
  const room = roomName("sdk");
  const alice = await openPage(room, "alice");
  const bob = await openPage(room, "bob");
  await alice.waitForFunction(() => window.room.members().some((m) => m.user === "bob"));
  const members = await alice.evaluate(() =>
    window.room
      .members()
      .map((m) => [m.user, m.connections, m.meta.name])
      .sort(),
  );
  assert.deepEqual(members, [
    ["alice", 1, "alice"],
    ["bob", 1, "bob"],
  ]);
  const seq = await bob.evaluate(() => window.room.publish({ text: "hi from bob" }));
  assert.equal(seq, 1);
  await alice.waitForFunction(() => window.log.message.length === 1);
  const got = await alice.evaluate(() => window.log.message[0]);
  assert.deepEqual([got.seq, got.user, got.from, got.data], [1, "bob", "c-bob", { text: "hi from bob" }]);
  assert.equal(await bob.evaluate(() => window.log.message.length), 0, "echo is off by default");
  assert.equal(await alice.evaluate(() => window.room.lastSeq), 1);
  assert.equal(await bob.evaluate(() => window.room.lastSeq), 1, "the ack moves lastSeq");
  await bob.evaluate(() => window.room.close());
  await alice.waitForFunction(() => window.log.presence.some((p) => p.members.find((m) => m.user === "bob")?.connections === 0));
  await Promise.all([alice.close(), bob.close()]);
});

test("a restart of the runtime: reconnecting, open, and every message exactly once in order", async () => {
  const room = roomName("sdk-restart");
  const page = await openPage(room, "carol", { options: FAST });
  for (let i = 1; i <= 3; i++) await api(edge, "POST", `/rooms/${room}/messages`, { data: i, id: `m${i}` });
  await page.waitForFunction(() => window.log.message.length === 3);

  const port = edge.port;
  await edge.stop("SIGKILL");
  await page.waitForFunction(() => window.room.state === "reconnecting");
  edge = await startEdge({ persistDir, port });
  // published while the page is still disconnected (it is backing off)
  for (let i = 4; i <= 8; i++) await api(edge, "POST", `/rooms/${room}/messages`, { data: i, id: `m${i}` });
  await page.waitForFunction(() => window.room.state === "open", null, { timeout: 20_000 });
  for (let i = 9; i <= 12; i++) await api(edge, "POST", `/rooms/${room}/messages`, { data: i, id: `m${i}` });
  await page.waitForFunction(() => window.log.message.length >= 12);
  assert.deepEqual(await seqs(page), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(await page.evaluate(() => window.log.message.map((m) => m.data)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const states = await page.evaluate(() => window.log.status.map((s) => s.state));
  assert.ok(states.includes("reconnecting"), states.join(","));
  assert.equal(states.at(-1), "open");
  assert.deepEqual(await page.evaluate(() => window.log.gap), []);
  await page.close();
});

test("publishes made offline are queued and delivered once after the reconnect", async () => {
  const room = roomName("sdk-queue");
  const page = await openPage(room, "dave", { options: FAST });
  const port = edge.port;
  await edge.stop("SIGKILL");
  await page.waitForFunction(() => window.room.state === "reconnecting");
  await page.evaluate(() => {
    window.acks = Promise.all([1, 2, 3].map((n) => window.room.publish({ n })));
  });
  edge = await startEdge({ persistDir, port });
  const acks = await page.evaluate(() => window.acks);
  assert.deepEqual(acks, [1, 2, 3]);
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    history.json.messages.map((m) => m.data.n),
    [1, 2, 3],
  );
  await page.close();
});

/**
 * A TCP proxy that can stall: it stops forwarding bytes on every open connection, both ways or
 * (`stall("down")`) only from the server to the client.
 */
function stallingProxy(target) {
  const sockets = new Set();
  const server = createServer((client) => {
    const upstream = tcpConnect(target, "127.0.0.1");
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      a.on("data", (d) => {
        if (!a.stalled) b.write(d);
      });
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    }
    // A new connection forwards until the next stall().
    client.stalled = false;
    upstream.stalled = false;
    upstream.down = true;
    sockets.add(client).add(upstream);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: server.address().port,
        stall(direction = "both") {
          for (const s of sockets) if (direction === "both" || s.down) s.stalled = true;
        },
        close() {
          for (const s of sockets) s.destroy();
          return new Promise((r) => server.close(r));
        },
      }),
    ),
  );
}

test("a connection that stops answering pings is declared dead and replaced", async () => {
  const room = roomName("sdk-stall");
  const proxy = await stallingProxy(edge.port);
  try {
    const page = await openPage(room, "erin", { url: `ws://127.0.0.1:${proxy.port}`, options: FAST });
    const stalledAt = Date.now();
    proxy.stall();
    await page.waitForFunction(() => window.log.status.some((s) => s.state === "reconnecting"));
    const detectedAfter = Date.now() - stalledAt;
    const reason = await page.evaluate(() => window.log.status.find((s) => s.state === "reconnecting"));
    // the SDK's own code (4000): the room did not close it, the SDK found it dead
    assert.deepEqual([reason.code, reason.reason], [4000, "heartbeat missed"]);
    // ping interval + pong timeout, plus timer slack
    assert.ok(detectedAfter <= FAST.pingIntervalMs + FAST.pongTimeoutMs + 1000, `detected after ${detectedAfter} ms`);
    await page.waitForFunction(() => window.room.state === "open");
    await api(edge, "POST", `/rooms/${room}/messages`, { data: "after the stall" });
    await page.waitForFunction(() => window.log.message.some((m) => m.data === "after the stall"));
    await page.close();
  } finally {
    await proxy.close();
  }
});

test("after close() nothing runs: no timers, no listeners, no connection attempts", async () => {
  const room = roomName("sdk-close");
  const page = await openPage(room, "frank", { options: FAST });
  await page.evaluate(() => {
    window.attempts = 0;
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...a) {
        super(...a);
        window.attempts++;
      }
    };
  });
  assert.deepEqual(await page.evaluate(() => window.room._resources()), [1, 1, 2]);
  await page.evaluate(() => window.room.close());
  assert.equal(await page.evaluate(() => window.room.state), "closed");
  assert.deepEqual(await page.evaluate(() => window.room._resources()), [0, 0, 0]);
  // run the page's clock far ahead: any timer left behind would fire and try to connect
  await page.clock.install();
  await page.clock.runFor(120_000);
  await page.evaluate(() => window.dispatchEvent(new Event("online")));
  assert.equal(await page.evaluate(() => window.attempts), 0);
  await assert.rejects(
    page.evaluate(() => window.room.publish(1)),
    /closed/,
  );
  await page.close();
});

test("a refused token is final: status closed with 4401, no retries", async () => {
  const room = roomName("sdk-refused");
  const page = await blankPage();
  await page.evaluate(
    ({ url, room }) => {
      window.statuses = [];
      window.room = window.roomcast.connect({ url, room, token: "not-a-valid-token", minReconnectDelayMs: 50 });
      window.room.on("status", (s) => window.statuses.push(s));
    },
    { url: edge.wsUrl, room },
  );
  await page.waitForFunction(() => window.room.state === "closed");
  const last = await page.evaluate(() => window.statuses.at(-1));
  assert.deepEqual([last.state, last.code], ["closed", 4401]);
  assert.match(last.reason, /token/);
  assert.deepEqual(await page.evaluate(() => window.room._resources()), [0, 0, 0]);
  await page.close();
});

test("a token function is called before every attempt, and `online` reconnects at once", async () => {
  const room = roomName("sdk-tokenfn");
  const page = await blankPage();
  const t = token("gina", { [room]: ALL_RIGHTS });
  // a long backoff, so only the `online` event can explain a quick reconnect
  await page.evaluate(
    ({ url, room, t }) => {
      window.calls = 0;
      window.room = window.roomcast.connect({
        url,
        room,
        minReconnectDelayMs: 60_000,
        maxReconnectDelayMs: 120_000,
        jitter: false,
        token: async () => {
          window.calls++;
          return t;
        },
      });
    },
    { url: edge.wsUrl, room, t },
  );
  await page.waitForFunction(() => window.room.state === "open");
  assert.equal(await page.evaluate(() => window.calls), 1);
  const port = edge.port;
  await edge.stop("SIGKILL");
  await page.waitForFunction(() => window.room.state === "reconnecting");
  edge = await startEdge({ persistDir, port });
  await page.evaluate(() => window.dispatchEvent(new Event("online")));
  await page.waitForFunction(() => window.room.state === "open", null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.calls), 2, "a fresh token for the new attempt");
  await page.close();
});

test("a publish made right after connect() is queued, sent once open, and acknowledged", async () => {
  const room = roomName("sdk-early");
  const page = await blankPage();
  const t = token("ivy", { [room]: ALL_RIGHTS });
  const seq = await page.evaluate(({ url, room, t }) => window.roomcast.connect({ url, room, token: t }).publish({ early: true }), {
    url: edge.wsUrl,
    room,
    t,
  });
  assert.equal(seq, 1);
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    history.json.messages.map((m) => m.data),
    [{ early: true }],
  );
  await page.close();
});

test("a room closed before it started never connects", async () => {
  const page = await blankPage();
  await page.evaluate(
    ({ url }) => {
      window.attempts = 0;
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(...a) {
          super(...a);
          window.attempts++;
        }
      };
      const room = window.roomcast.connect({ url, room: "never", token: "t" });
      room.close();
      window.closedRoom = room;
    },
    { url: edge.wsUrl },
  );
  // start() was queued as a microtask; by the next task it has run (or not)
  await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
  assert.equal(await page.evaluate(() => window.attempts), 0);
  assert.deepEqual(await page.evaluate(() => window.closedRoom._resources()), [0, 0, 0]);
  await page.close();
});

test("echo off: this client's own messages replayed on resume move lastSeq on and are not delivered; no error", async () => {
  const room = roomName("sdk-echo-replay");
  const proxy = await stallingProxy(edge.port);
  try {
    const page = await openPage(room, "hana", { url: `ws://127.0.0.1:${proxy.port}`, options: FAST });
    // the room hears this publish, but its ack (and everything else) no longer reaches the page
    proxy.stall("down");
    await page.evaluate(() => {
      window.ack = window.room.publish("mine");
    });
    await until(async () => (await api(edge, "GET", `/rooms/${room}/history?since=0`)).json?.messages?.length === 1, {
      what: "the publish stored",
    });
    await api(edge, "POST", `/rooms/${room}/messages`, { data: "theirs" });
    // the page finds the connection dead and resumes from 0: the room replays 1 (its own) and 2
    assert.equal(await page.evaluate(() => window.ack), 1, "the resent publish is acknowledged with its first seq");
    await page.waitForFunction(() => window.log.message.length >= 1);
    assert.deepEqual(await page.evaluate(() => window.log.message.map((m) => [m.seq, m.data])), [[2, "theirs"]]);
    assert.equal(await page.evaluate(() => window.room.lastSeq), 2);
    assert.deepEqual(await page.evaluate(() => window.log.error), [], "a replay with the client's own messages has no holes");
    assert.deepEqual(await page.evaluate(() => window.log.gap), []);
    await page.close();
  } finally {
    await proxy.close();
  }
});

test("token lifetime: a token function refreshes an expiring token on the open connection; a fixed token is closed with 4002, then refused", {
  timeout: 60_000,
}, async () => {
  const room = roomName("sdk-refresh");
  const now = Date.now();
  // expired 25 s ago: the edge still admits it (30 s leeway), and the room closes it about 5 s in
  const stale = (user) => token(user, { [room]: ALL_RIGHTS }, { ttlSeconds: -25, now });
  const closesAt = (Math.floor(now / 1000) - 25 + 30) * 1000;
  const tokens = {
    // refreshed at once (the welcome says it expired), with a fresh token of its own
    rhea: [stale("rhea"), token("rhea", { [room]: ALL_RIGHTS })],
    // the refresh hands another user's token: refused; closed with 4002; the reconnect gets a fresh one
    sam: [stale("sam"), token("mallory", { [room]: ALL_RIGHTS }), token("sam", { [room]: ALL_RIGHTS })],
  };
  const page = await blankPage();
  await page.evaluate(
    ({ url, room, tokens, fixed }) => {
      window.rooms = {};
      const watch = (name, options) => {
        const r = window.roomcast.connect({
          url,
          room,
          clientId: `c-${name}`,
          minReconnectDelayMs: 50,
          maxReconnectDelayMs: 200,
          ...options,
        });
        const log = { status: [], error: [], calls: 0 };
        r.on("status", (s) => log.status.push(s));
        r.on("error", (e) => log.error.push(e));
        window.rooms[name] = { r, log };
        return log;
      };
      for (const [name, list] of Object.entries(tokens)) {
        // each call hands the next token of the list (the last one from then on)
        watch(name, { token: async () => list[Math.min(window.rooms[name].log.calls++, list.length - 1)] });
      }
      watch("tess", { token: fixed });
    },
    { url: edge.wsUrl, room, tokens, fixed: stale("tess") },
  );
  const state = (name) => page.evaluate((n) => window.rooms[n].r.state, name);
  const log = (name) => page.evaluate((n) => window.rooms[n].log, name);

  // the fixed token: closed with 4002 past the leeway, and its own (expired) token is then refused
  await page.waitForFunction(() => window.rooms.tess.r.state === "closed", null, { timeout: 30_000 });
  const tess = await log("tess");
  assert.ok(Date.now() >= closesAt - 1_000, "not closed before the token expired (with the leeway)");
  const reconnecting = tess.status.find((s) => s.state === "reconnecting");
  assert.deepEqual([reconnecting.code, reconnecting.reason], [4002, "token expired"]);
  assert.equal(tess.status.at(-1).code, 4401, "a fixed token cannot be refreshed: the reconnect is refused for good");

  // the refused refresh: an error event, then 4002, then a fresh token on the reconnect
  await page.waitForFunction(() => window.rooms.sam.log.calls === 3 && window.rooms.sam.r.state === "open", null, { timeout: 30_000 });
  const sam = await log("sam");
  assert.ok(["unauthorized", "forbidden"].includes(sam.error[0]?.code), JSON.stringify(sam.error));
  assert.deepEqual(
    sam.status.filter((s) => s.state === "reconnecting").map((s) => s.code),
    [4002],
  );

  // the refreshed connection outlived its first token without a reconnect, and still publishes
  await until(() => Date.now() > closesAt + 2_000, { timeoutMs: 40_000, what: "past the first token's expiry" });
  assert.equal(await state("rhea"), "open");
  const rhea = await log("rhea");
  assert.equal(rhea.calls, 2, "one token to connect, one to refresh");
  assert.deepEqual(
    rhea.status.map((s) => s.state),
    ["connecting", "open"],
  );
  assert.deepEqual(rhea.error, []);
  assert.equal(typeof (await page.evaluate(() => window.rooms.rhea.r.publish("still here"))), "number");
  await page.close();
});

// ---- issue #14: every call settles, every refusal reaches the app with its reason ---------------

test("publish refusals reach the app: over the frame limit locally (never sent), and the room's own with its code and message", async () => {
  const room = roomName("sdk-refusals");
  const page = await blankPage();
  const writer = token("wanda", { [room]: ALL_RIGHTS });
  const viewer = token("vic", { [room]: ["subscribe", "presence"] });
  const result = await page.evaluate(
    async ({ url, room, writer, viewer }) => {
      const settle = (p) =>
        p.then(
          (seq) => ({ seq }),
          (e) => ({ name: e.name, code: e.code, message: e.message, isError: e instanceof window.roomcast.RoomcastError }),
        );
      const w = window.roomcast.connect({ url, room, token: writer });
      const big = await settle(w.publish("x".repeat(70_000)));
      const small = await settle(w.publish("fits"));
      const v = window.roomcast.connect({ url, room, token: viewer });
      const refused = await settle(v.publish("not allowed"));
      const states = [w.state, v.state];
      w.close();
      v.close();
      return { big, small, refused, states };
    },
    { url: edge.wsUrl, room, writer, viewer },
  );
  assert.deepEqual(result.big, {
    name: "RoomcastError",
    code: "too_large",
    message: "the message is larger than the room's frame limit (65536 bytes); it was not sent",
    isError: true,
  });
  assert.deepEqual(result.small, { seq: 1 }, "the big one was never stored (nor sent: the connection had no strike)");
  const { message, ...refused } = result.refused;
  assert.deepEqual(refused, { name: "RoomcastError", code: "forbidden", isError: true });
  assert.match(message, /token may not/, "the room's own message, not just the code");
  assert.deepEqual(result.states, ["open", "open"]);
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    history.json.messages.map((m) => m.data),
    ["fits"],
  );
  await page.close();
});

test("a room name the server would refuse throws a TypeError at connect(); nothing is opened", async () => {
  const page = await blankPage();
  const result = await page.evaluate(
    ({ url }) => {
      window.attempts = 0;
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(...a) {
          super(...a);
          window.attempts++;
        }
      };
      return ["has space", "a/b", "caf\u00e9", "x".repeat(129)].map((room) => {
        try {
          window.roomcast.connect({ url, room, token: "t" });
          return "connected";
        } catch (e) {
          return `${e.name}: ${e.message}`;
        }
      });
    },
    { url: edge.wsUrl },
  );
  for (const r of result) assert.match(r, /^TypeError: roomcast: invalid room name .*1-128 characters of A-Z a-z 0-9 _ - \. :$/);
  await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
  assert.equal(await page.evaluate(() => window.attempts), 0);
  await page.close();
});

test("the welcome's liveness contract and limits: the SDK pings as often as the room asks and refuses frames over its limit", {
  timeout: 90_000,
}, async () => {
  // HEARTBEAT_TIMEOUT_MS 6 s: the welcome asks for a ping every 2 s. The SDK's own interval (the
  // default 20 s) would let the room close it with 4001 at 6-9 s.
  const strict = await startEdge({ vars: { HEARTBEAT_TIMEOUT_MS: "6000", MAX_FRAME_BYTES: "2048" } });
  try {
    const room = roomName("sdk-contract");
    const page = await blankPage();
    const t = token("lena", { [room]: ALL_RIGHTS });
    await page.evaluate(
      ({ url, room, t }) => {
        window.statuses = [];
        window.room = window.roomcast.connect({ url, room, token: t });
        window.room.on("status", (s) => window.statuses.push(s));
      },
      { url: strict.wsUrl, room, t },
    );
    await page.waitForFunction(() => window.room.state === "open");
    // two timeouts: silent, it would have been closed by now
    await new Promise((r) => setTimeout(r, 12_000));
    assert.deepEqual(
      await page.evaluate(() => window.statuses.map((s) => [s.state, s.code])),
      [
        ["connecting", 0],
        ["open", 0],
      ],
      "never closed for silence",
    );
    const big = await page.evaluate(() =>
      window.room.publish("y".repeat(3_000)).then(
        () => "stored",
        (e) => `${e.code}: ${e.message}`,
      ),
    );
    assert.equal(big, "too_large: the message is larger than the room's frame limit (2048 bytes); it was not sent");
    assert.equal(await page.evaluate(() => window.room.publish("small")), 1);
    await page.evaluate(() => window.room.close());
    await page.close();
  } finally {
    await strict.stop();
  }
});
