// Phones, trains and flaky networks (issue #24): what tests/e2e/offline*.test.mjs share. The app's
// side (the package, a page, a token endpoint), a TCP proxy the test controls between the page and
// the runtime, and pages of their own browser context.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTcpServer, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { ALL_RIGHTS, ROOT, token } from "./harness.mjs";

// A short heartbeat timeout (the welcome advertises it; interval 3 s), so the room's side of a dead
// link shows in seconds. Everything else is the defaults, the SDK's options included.
export const HEARTBEAT_TIMEOUT_MS = 9_000;
export const PRESENCE_GRACE_MS = 5_000;
export const VARS = { HEARTBEAT_TIMEOUT_MS, PRESENCE_GRACE_MS };

/**
 * The app's side: the package (`/roomcast.js`, `/messages.js`), a blank page, and a token endpoint
 * as the tutorial's backend has one (`/token?user=…&room=…`: the token as text; `/refuse`: a 400
 * with an error body).
 */
export function serveSite() {
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
export function proxy(port) {
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
export async function newPage(browser, site) {
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
export async function connectRooms(page, url, user, rooms, { session = false } = {}) {
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
