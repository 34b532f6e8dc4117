// Phones, trains and flaky networks (issue #24): the browser SDK in Chromium, talking to the local
// runtime through a TCP proxy the test controls. The proxy passes bytes, blackholes them (no FIN,
// no RST: a dead link that looks alive) or refuses (resets every connection), as a phone's network
// does; the page's own `offline` comes from Playwright (which alone holds an open socket's frames,
// hence the proxy as well).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTcpServer, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { launchChromium } from "../browser.mjs";
import { ALL_RIGHTS, api, ROOT, roomName, startEdge, tempDir, token } from "../harness.mjs";

// A short heartbeat timeout (the welcome advertises it; interval 3 s), so the room's side of a dead
// link shows in seconds. Everything else is the defaults, the SDK's options included.
const HEARTBEAT_TIMEOUT_MS = 9_000;
const PRESENCE_GRACE_MS = 5_000;
const VARS = { HEARTBEAT_TIMEOUT_MS, PRESENCE_GRACE_MS };

let edge, browser, site;
const persistDir = tempDir("offline");
before(async () => {
  [edge, browser, site] = await Promise.all([startEdge({ persistDir, vars: VARS }), launchChromium(), serveSite()]);
});
after(async () => {
  await Promise.all([edge?.stop(), browser?.close(), site?.close()]);
});

/**
 * The app's side: the package (`/roomcast.js`, `/messages.js`), a blank page, and a token endpoint
 * as the tutorial's backend has one (`/token?user=…&room=…`: the token as text; `/refuse`: a 400
 * with an error body).
 */
function serveSite() {
  const dist = (f) => readFileSync(join(ROOT, "sdk", "dist", f));
  const page = `<!doctype html><meta charset="utf-8"><title>offline</title>
<script type="module">import * as roomcast from "/roomcast.js"; import { followMessages } from "/messages.js";
window.roomcast = roomcast; window.followMessages = followMessages; window.ready = true;</script>`;
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/roomcast.js" || url.pathname === "/messages.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(dist(url.pathname === "/roomcast.js" ? "index.js" : "messages.js"));
    } else if (url.pathname === "/token") {
      const rooms = Object.fromEntries(url.searchParams.getAll("room").map((r) => [r, ALL_RIGHTS]));
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(token(url.searchParams.get("user"), rooms));
    } else if (url.pathname === "/refuse") {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("user must be 1-64 characters of A-Z a-z 0-9 _ - (got: Mary Ann)");
    } else {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(page);
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) });
    }),
  );
}

/**
 * A TCP proxy to `port` in one of three modes: `pass`; `blackhole` (nothing more is forwarded
 * either way on any connection, and new ones are accepted and hang: no FIN, no RST, even when the
 * server closes its side); `refuse` (every connection, open or new, is reset).
 */
function proxy(port) {
  let mode = "pass";
  const pairs = new Set();
  const server = createTcpServer((client) => {
    client.on("error", () => {});
    if (mode === "refuse") return client.resetAndDestroy();
    const pair = { client, held: mode === "blackhole" };
    pairs.add(pair);
    client.on("close", () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    if (pair.held) return;
    const upstream = tcpConnect(port, "127.0.0.1");
    pair.upstream = upstream;
    upstream.on("error", () => {});
    client.on("data", (d) => pair.held || upstream.write(d));
    upstream.on("data", (d) => pair.held || client.write(d));
    // a blackholed link tells the client nothing, not even that the server closed
    upstream.on("close", () => pair.held || client.destroy());
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `ws://127.0.0.1:${server.address().port}`,
        set(m) {
          mode = m;
          for (const p of pairs) {
            if (m === "blackhole") p.held = true;
            if (m === "refuse") {
              p.client.resetAndDestroy();
              p.upstream?.destroy();
            }
          }
        },
        close() {
          for (const p of pairs) {
            p.client.destroy();
            p.upstream?.destroy();
          }
          return new Promise((r) => server.close(r));
        },
      }),
    ),
  );
}

/** A page of its own browser context (so it can go offline alone), with the package loaded. */
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(site.url);
  await page.waitForFunction(() => window.ready === true);
  return { context, page };
}

/**
 * Connects `rooms` on `page` as `user` through `url`, with the SDK's default options and a token
 * function that fetches from the app's endpoint (as the tutorial's does): each with connect(), or
 * (`session`) all joined on one createClient() (`window.client`). Each room's events are recorded
 * in `window.logs[room]` and the rooms are `window.rooms[room]`.
 */
async function connectRooms(page, url, user, rooms, { session = false } = {}) {
  await page.evaluate(
    ({ url, user, rooms, session }) => {
      const q = `user=${encodeURIComponent(user)}&${rooms.map((r) => `room=${encodeURIComponent(r)}`).join("&")}`;
      const tokenFn = () => fetch(`/token?${q}`).then((r) => r.text());
      window.rooms ??= {};
      window.logs ??= {};
      if (session) window.client = window.roomcast.createClient({ url, token: tokenFn });
      for (const room of rooms) {
        const log = { status: [], error: [], presence: [], message: [] };
        const r = session ? window.client.join(room) : window.roomcast.connect({ url, room, token: tokenFn, clientId: `c-${user}` });
        for (const e of Object.keys(log)) r.on(e, (p) => log[e].push({ ...p, at: Date.now() }));
        window.rooms[room] = r;
        window.logs[room] = log;
      }
    },
    { url, user, rooms, session },
  );
  await page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].state === "open"), rooms);
}

const history = async (room) => (await api(edge, "GET", `/rooms/${room}/history?since=0`)).json.messages;

test("90 s offline with the default options, then online: the page recovers by itself and every publish made offline is stored once, in order (connect() and createClient())", async (t) => {
  const [room, joined] = [roomName("offline-90"), roomName("offline-90-session")];
  const both = [room, joined];
  const link = await proxy(edge.port);
  const { context, page } = await newPage();
  try {
    await connectRooms(page, link.url, "phone", [room]);
    await connectRooms(page, link.url, "phone", [joined], { session: true });
    // the phone loses its network: the browser says so, and the link goes dead without a word
    link.set("blackhole");
    await context.setOffline(true);
    await page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].state === "reconnecting"), both, { timeout: 10_000 });
    await page.evaluate((rooms) => {
      window.acks = Promise.all(rooms.map((r) => Promise.all([1, 2, 3, 4, 5].map((n) => window.rooms[r].publish({ n })))));
      window.acks.catch((e) => (window.failed = e));
    }, both);
    const offlineFor = 90_000;
    await new Promise((r) => setTimeout(r, offlineFor));
    const during = await page.evaluate(
      (rooms) => [
        rooms.map((r) => window.rooms[r].state),
        window.client.status,
        window.failed?.code,
        rooms.flatMap((r) => window.logs[r].error.map((e) => e.code)),
      ],
      both,
    );
    assert.deepEqual(during.slice(0, 2), [["reconnecting", "reconnecting"], "reconnecting"], "still trying, not closed");
    assert.equal(during[2], undefined, "no publish rejected");
    assert.ok(
      during[3].every((c) => c === "token_failed"),
      during[3].join(),
    );
    link.set("pass");
    const back = Date.now();
    await context.setOffline(false);
    const acks = await page.evaluate(() => window.acks);
    const recovered = Date.now() - back;
    assert.deepEqual(acks, [
      [1, 2, 3, 4, 5],
      [1, 2, 3, 4, 5],
    ]);
    t.diagnostic(`both open and acknowledged ${recovered} ms after the network came back`);
    assert.ok(recovered < 5_000, `open and acknowledged ${recovered} ms after the network came back`);
    for (const r of both) {
      assert.deepEqual(
        (await history(r)).map((m) => m.data.n),
        [1, 2, 3, 4, 5],
        `${r}: each once, in order`,
      );
    }
    const states = await page.evaluate((rooms) => rooms.flatMap((r) => window.logs[r].status.map((s) => s.state)), both);
    assert.ok(!states.includes("closed"), states.join());
  } finally {
    await context.close();
    await link.close();
  }
});

test("a 20 s blackhole is noticed within 10 s while visible; the others see the user leave within the timeout plus grace; pending messages show at once and become stored ones, once each (connect() and createClient())", async (t) => {
  const [room, joined] = [roomName("blackhole"), roomName("blackhole-session")];
  const both = [room, joined];
  const link = await proxy(edge.port);
  const user = await newPage();
  const other = await newPage();
  try {
    await connectRooms(other.page, edge.wsUrl, "watcher", both);
    await connectRooms(user.page, link.url, "rider", [room]);
    await connectRooms(user.page, link.url, "rider", [joined], { session: true });
    await user.page.evaluate((rooms) => {
      window.views = [];
      window.feeds = rooms.map((r) => window.followMessages(window.rooms[r], { limit: 20 }, (v) => window.views.push(v.messages)));
    }, both);
    await other.page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].members().some((m) => m.user === "rider")), both);
    assert.equal(await user.page.evaluate(() => document.visibilityState), "visible");
    const cut = Date.now();
    link.set("blackhole");
    const noticed = [];
    for (const r of both) {
      await user.page.waitForFunction((r) => window.rooms[r].state === "reconnecting", r, { timeout: 12_000 });
      noticed.push(Date.now() - cut);
    }
    const status = await user.page.evaluate((r) => window.logs[r].status.at(-1), room);
    assert.deepEqual([status.code, status.reason], [4000, "heartbeat missed"]);
    t.diagnostic(`blackhole noticed after ${noticed.join(" ms (connect()), ")} ms (createClient())`);
    assert.ok(Math.max(...noticed) <= 10_000, `noticed after ${noticed} ms`);
    // published into the dead link: shown at once, as pending
    const shown = await user.page.evaluate((rooms) => {
      window.acks = Promise.all(rooms.map((r) => Promise.all(["a", "b", "c"].map((t) => window.rooms[r].publish(t)))));
      return window.feeds.map((f) => f.view.messages.map((m) => `${m.data}${m.pending ? "…" : ""}`).join());
    }, both);
    assert.deepEqual(shown, ["a…,b…,c…", "a…,b…,c…"]);
    // the room's side: the rider's connection is closed after the heartbeat timeout, and the
    // rider leaves the others' presence after the grace period
    const left = [];
    for (const r of both) {
      await other.page.waitForFunction((r) => !window.rooms[r].members().some((m) => m.user === "rider"), r, { timeout: 20_000 });
      left.push(Date.now() - cut);
    }
    // the room last heard of the rider at most one ping interval before the cut
    const bound = HEARTBEAT_TIMEOUT_MS + PRESENCE_GRACE_MS + 1_000;
    t.diagnostic(`left the others' presence ${left.join(" ms (connect()), ")} ms (createClient()) after the cut`);
    assert.ok(Math.max(...left) <= bound, `left presence ${left} ms after the cut (timeout + grace + 1 s = ${bound})`);
    const rest = 20_000 - (Date.now() - cut);
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    link.set("pass");
    assert.deepEqual(await user.page.evaluate(() => window.acks), [
      [1, 2, 3],
      [1, 2, 3],
    ]);
    await user.page.waitForFunction(() => window.feeds.every((f) => f.view.messages.every((m) => !m.pending)));
    const lists = await user.page.evaluate(() => window.feeds.map((f) => f.view.messages.map((m) => `${m.seq}:${m.data}`).join()));
    assert.deepEqual(lists, ["1:a,2:b,3:c", "1:a,2:b,3:c"]);
    // never shown twice on the way
    const twice = await user.page.evaluate(() => window.views.some((v) => new Set(v.map((m) => m.data)).size !== v.length));
    assert.equal(twice, false);
    for (const r of both) {
      assert.deepEqual(
        (await history(r)).map((m) => m.data),
        ["a", "b", "c"],
      );
    }
    await other.page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].members().some((m) => m.user === "rider")), both);
  } finally {
    await Promise.all([user.context.close(), other.context.close()]);
    await link.close();
  }
});

test("after an edge restart a page with 5 rooms (and 5 more on one createClient()) is live in all of them within 3 s of the first", async (t) => {
  const rooms = Array.from({ length: 5 }, (_, i) => roomName(`restart-${i}`));
  const joined = Array.from({ length: 5 }, (_, i) => roomName(`restart-session-${i}`));
  const all = [...rooms, ...joined];
  const { context, page } = await newPage();
  try {
    await connectRooms(page, edge.wsUrl, "five", rooms);
    await connectRooms(page, edge.wsUrl, "five", joined, { session: true });
    const port = edge.port;
    await edge.stop("SIGKILL");
    await page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].state === "reconnecting"), all);
    edge = await startEdge({ persistDir, port, vars: VARS });
    const up = Date.now();
    await page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].state === "open"), all, { timeout: 40_000 });
    const opened = await page.evaluate((rooms) => rooms.map((r) => window.logs[r].status.findLast((s) => s.state === "open").at), all);
    const first = Math.min(...opened);
    const spread = Math.max(...opened) - first;
    t.diagnostic(`first room open ${first - up} ms after the edge answered, all ${spread} ms later`);
    assert.ok(spread <= 3_000, `live in all ${spread} ms after the first (first ${first - up} ms after the edge answered)`);
    // nudged: the others opened right after the first, not on their own backoff
    assert.ok(spread <= 1_500, `the others followed the first within ${spread} ms`);
  } finally {
    await context.close();
  }
});

test("a token function returning an HTTP error body: token_failed with that body's start, not a WebSocket error", async () => {
  const room = roomName("bad-token");
  const { context, page } = await newPage();
  try {
    const error = await page.evaluate(
      ({ url, room }) =>
        new Promise((resolve) => {
          const r = window.roomcast.connect({ url, room, token: () => fetch("/refuse").then((x) => x.text()) });
          r.on("error", (e) => {
            r.close();
            resolve({ code: e.code, message: e.message, state: r.state });
          });
        }),
      { url: edge.wsUrl, room },
    );
    assert.equal(error.code, "token_failed");
    assert.ok(error.message.includes('"user must be 1-64 characters of A-Z a-'), error.message);
    assert.doesNotMatch(error.message, /WebSocket/);
  } finally {
    await context.close();
  }
});
