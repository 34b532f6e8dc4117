// Browser helpers: Debian's Chromium driven by playwright-core, and a small static server for
// test pages that import the built SDK package (sdk/dist) the way a user's page would.

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT } from "./harness.mjs";

export function launchChromium() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/**
 * Makes `page` record every WebSocket it opens: `window.sockets` lists their URLs' paths
 * (`/rooms/<room>/ws`, `/session/ws`), in order. Call before `page.goto`.
 */
export function countSockets(page) {
  return page.addInitScript(() => {
    window.sockets = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(url, ...rest) {
        super(url, ...rest);
        window.sockets.push(new URL(url, location.href).pathname);
      }
    };
  });
}
/** Serves `/roomcast.js` (the built package) and a page that exposes it as `window.roomcast`. */
export function servePackage() {
  const sdk = () => readFileSync(join(ROOT, "sdk", "dist", "index.js"));
  const page = `<!doctype html><meta charset="utf-8"><title>sdk test</title>
<script type="module">import * as roomcast from "/roomcast.js"; window.roomcast = roomcast; window.ready = true;</script>`;
  const server = createServer((req, res) => {
    if (req.url === "/roomcast.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(sdk());
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

/** Serves a built app's directory (`/` is `index`) on a free port. */
export function serveDir(dir, index = "index.html") {
  const server = createServer(async (req, res) => {
    const path = req.url === "/" ? `/${index}` : req.url;
    try {
      const body = await readFile(join(dir, path));
      res.writeHead(200, { "content-type": path.endsWith(".js") ? "text/javascript" : "text/html" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) });
    }),
  );
}
