// Test harness: runs the real local edge (wrangler dev: miniflare + workerd) on a free port with
// its own persistence directory, waits until it answers, and always stops it. Also a small
// WebSocket client that records every frame and waits for the ones a test expects.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { devVar, mintToken } from "../tools/token.mjs";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const WRANGLER = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");

/** The API key the setup wrote into .dev.vars, which wrangler dev loads. */
export function apiKey() {
  const vars = readFileSync(join(ROOT, ".dev.vars"), "utf8");
  const match = vars.match(/^ROOMCAST_API_KEY="?([^"\n]+)"?/m);
  if (!match) throw new Error(".dev.vars has no ROOMCAST_API_KEY; run `npm run setup`");
  return match[1];
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), `roomcast-${prefix}-`));
}

/**
 * Starts `wrangler dev`. `vars` override `[vars]` from wrangler.toml. Resolves once the edge
 * answers HTTP; rejects with the log if it exits or does not come up within `timeoutMs`.
 */
export async function startEdge(options = {}) {
  // A free port can be taken by another process (another edge's workerd opens several) between
  // our check and wrangler's bind; then it is tried again on fresh ports. A caller that asked for
  // a specific port gets the failure instead.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEdgeOnce(options);
    } catch (e) {
      if (options.port !== undefined || attempt >= 3 || !/Address already in use/.test(e.message)) throw e;
    }
  }
}

/**
 * `config` runs another wrangler.toml (the benchmark's peers); `logLevel` overrides
 * ROOMCAST_LOG_LEVEL (the benchmarks log warnings only, for every system alike).
 */
/** Whether `GET /` shows the edge is up: the demo page answers 200. */
const demoReady = (response) => response.status === 200;

async function startEdgeOnce({
  persistDir = tempDir("state"),
  vars = {},
  port,
  timeoutMs = 120_000,
  config,
  logLevel,
  ready = demoReady,
} = {}) {
  port ??= await freePort();
  // An inspector port of our own: wrangler's default (9229) is raced for when edges start together.
  const inspectorPort = await freePort();
  const args = [
    WRANGLER,
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--persist-to",
    persistDir,
    "--inspector-port",
    String(inspectorPort),
    "--log-level",
    logLevel ?? process.env.ROOMCAST_LOG_LEVEL ?? "info",
    "--show-interactive-dev-session=false",
  ];
  // The demo pages, as `npm run dev` serves them (scripts/dev.sh); another config brings its own.
  if (config) args.push("--config", config);
  else args.push("--assets", "demo");
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: true, // its own process group, so workerd is stopped with it
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const edge = {
    port,
    persistDir,
    /** wrangler's process; workerd runs below it (the benchmarks measure the whole tree). */
    pid: child.pid,
    /** wrangler's inspector (DevTools protocol) for the Worker's isolate (bench/idle-memory.mjs). */
    inspectorPort,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    get log() {
      return log;
    },
    /** Stops the edge; `signal` SIGKILL simulates a crash. */
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        /* already gone */
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }, 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await Promise.race([exited, fetch(`${edge.url}/`).then(ready, () => null)]);
    if (state === true) return edge;
    if (state && typeof state === "object") throw new Error(`wrangler dev exited (${JSON.stringify(state)}):\n${log}`);
    if (Date.now() > deadline) {
      await edge.stop();
      throw new Error(`wrangler dev did not answer within ${timeoutMs} ms:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100)); // poll interval while waiting for readiness
  }
}

/** An HTTP call to the backend API with the API key. */
export async function api(edge, method, path, body, { key = apiKey() } = {}) {
  const res = await fetch(`${edge.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** A token signed with the development secret, as an application's backend would sign it. */
export function token(user, rooms, { ttlSeconds = 3600, meta, now } = {}) {
  return mintToken({ secret: devVar("ROOMCAST_SECRET"), user, rooms, ttlSeconds, meta, now });
}

export const ALL_RIGHTS = ["subscribe", "publish", "presence"];

/** A raw protocol client that records every frame. */
export class Client {
  /**
   * Opens a connection. Unless `token` is given or `anonymous` is set, it carries a token for
   * `query.user` (or the cid) with every right in `room`, and `query.meta` becomes the token's
   * presence metadata. The token rides in the subprotocol, or in `?token=` when `protocols` is empty.
   * `lenient`: a received line that is not JSON is recorded as `{type: "unparsable", line}`
   * instead of throwing (for tests that feed the room hostile input). `welcome: false`: resolves
   * once the socket is open, without waiting for the welcome (for connections the room may refuse).
   */
  static async connect(
    edge,
    room,
    query = {},
    { protocols = ["roomcast.v1"], pingEveryMs, token: given, anonymous, lenient = false, welcome = true } = {},
  ) {
    query = { ...query };
    let bearer = given;
    if (bearer === undefined && !anonymous) {
      const meta = query.meta === undefined ? undefined : JSON.parse(query.meta);
      bearer = token(query.user ?? query.cid ?? "user", { [room]: ALL_RIGHTS }, { meta });
      delete query.user;
      delete query.meta;
    }
    if (bearer && protocols.length === 0) query.token = bearer;
    else if (bearer) protocols = [...protocols, `bearer.${bearer}`];
    const qs = new URLSearchParams(query).toString();
    // closeTimeout: after a close handshake the local runtime (through wrangler dev's proxy)
    // leaves the TCP connection open; `ws` would wait 30 s before reporting the close.
    const ws = new WebSocket(`${edge.wsUrl}/rooms/${room}/ws${qs ? `?${qs}` : ""}`, protocols, { closeTimeout: 500 });
    const client = new Client(ws, { lenient });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    if (!welcome) return client;
    client.welcome = await client.next((f) => f.type === "welcome");
    if (pingEveryMs) client.pinger = setInterval(() => client.raw('{"type":"ping"}'), pingEveryMs);
    return client;
  }

  constructor(ws, { lenient = false } = {}) {
    this.ws = ws;
    this.frames = [];
    this.waiters = [];
    this.closed = new Promise((resolve) =>
      ws.once("close", (code, reason) => {
        clearInterval(this.pinger);
        resolve({ code, reason: reason.toString() });
      }),
    );
    /** Every WebSocket message as received, before splitting into frames. */
    this.received = [];
    ws.on("message", (data) => {
      const text = data.toString();
      this.received.push(text);
      // One WebSocket message may carry several frames, one per line (docs/PROTOCOL.md).
      for (const line of text.split("\n")) {
        if (!lenient) {
          this.frames.push(JSON.parse(line));
          continue;
        }
        try {
          this.frames.push(JSON.parse(line));
        } catch {
          this.frames.push({ type: "unparsable", line });
        }
      }
      this.waiters = this.waiters.filter((w) => !w.check());
    });
  }

  /** Resolves with the first frame (recorded or future) matching `pred` that `next` has not returned yet. */
  next(pred, timeoutMs = 10_000) {
    this.taken ??= new Set();
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          const frame = this.frames.find((f) => !this.taken.has(f) && pred(f));
          if (!frame) return false;
          this.taken.add(frame);
          clearTimeout(waiter.timer);
          resolve(frame);
          return true;
        },
      };
      if (waiter.check()) return;
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames).slice(0, 2000)}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  messages() {
    return this.frames.filter((f) => f.type === "message");
  }
  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }
  raw(text) {
    this.ws.send(text);
  }

  /** Publishes and resolves with the ack (or error) frame for this id. */
  async publish(id, data) {
    this.send({ type: "publish", id, data });
    return this.next((f) => (f.type === "ack" || f.type === "error") && f.id === id);
  }

  async close() {
    clearInterval(this.pinger);
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    await this.closed;
  }
}

/**
 * A WebSocket upgrade made by hand over a plain TCP socket, for what a WebSocket library will not
 * do: offer exactly the headers given, stop reading (`socket.pause()`), send frames as bytes
 * (`wsFrame`). Resolves once the response's head arrived, with its status line, its headers
 * (lower-case names), the socket, and the bytes that came after the head.
 */
export function rawUpgrade(edge, path, headers = {}) {
  const { hostname, port, host } = new URL(edge.url);
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: hostname, port: Number(port) });
    socket.once("error", reject);
    socket.once("connect", () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${host}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
        "Sec-WebSocket-Version: 13",
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    });
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      socket.pause();
      const [status, ...lines] = head.subarray(0, end).toString().split("\r\n");
      const fields = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        fields[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers: fields, socket, rest: head.subarray(end + 4) });
    };
    socket.on("data", onData);
  });
}

/** One masked client frame (FIN set): opcode 1 text, 2 binary, 9 ping, 8 close. */
export function wsFrame(opcode, payload) {
  const data = typeof payload === "string" ? Buffer.from(payload) : payload;
  const length = data.length < 126 ? [data.length] : data.length < 65536 ? [126, data.length >> 8, data.length & 255] : null;
  const head = length ? Buffer.from([0x80 | opcode, 0x80 | length[0], ...length.slice(1)]) : Buffer.alloc(10);
  if (!length) {
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(data.length), 2);
  }
  const mask = randomBytes(4);
  const body = Buffer.allocUnsafe(data.length);
  for (let i = 0; i < data.length; i++) body[i] = data[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

/** The resident memory of the edge's workerd processes, in bytes (Linux: from /proc). */
export function workerdMemory(edge) {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const group = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
      if (group !== edge.pid || !name.includes("workerd")) continue;
      total += Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]) * 1024;
    } catch {
      /* the process ended meanwhile */
    }
  }
  return total;
}

/** The `q` quantile (0-1) of `values`, by rank. */
export function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `cond()` is truthy, checking every `intervalMs`; rejects after `timeoutMs`. */
export async function until(cond, { timeoutMs = 10_000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

let unique = 0;
/** A room name no other test uses. */
export function roomName(prefix = "t") {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${unique++}`;
}

/** A small seeded generator (mulberry32), so a run with faults chosen at random can be repeated. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
