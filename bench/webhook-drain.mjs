// How fast a room's webhook outbox drains into a healthy receiver, and how fast one member can
// fill it (issue #22: "a healthy receiver keeps up with what one member may publish"). Not a timed
// test: benchmark figures, on whatever machine runs it (printed with the results; docs/RELIABILITY.md
// cites them).
//
//   node bench/webhook-drain.mjs [--events 20000] [--delays 0,150] [--sizes 200,65000] [--seconds 10]
//                                [--part drain|member|all]
//
// drain   For each receiver delay and data size, on a fresh `wrangler dev`: the receiver holds the
//         room's first POST while `events` messages are published over HTTP (the API key, its
//         rate lifted; at most 256 MiB of them), so they wait in the outbox; then it answers that
//         POST and every later one after `delay` ms. Measured: from the release until the receiver has every event, events
//         and event bytes per second, POSTs and events per POST. The receiver checks that every
//         event arrives once and in order.
// member  What one member can add at the room's default limits: one user, MAX_CONNECTIONS_PER_USER
//         sockets each publishing as fast as RATE_MESSAGES_PER_SEC and RATE_BYTES_PER_SEC allow,
//         plus HTTP publishes with the user's token as fast as HTTP_RATE_* allow, for `seconds`;
//         the receiver answers at once. Measured: acknowledged messages per second after the
//         first second (the buckets' bursts), and the event bytes the receiver got per second.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { api, ROOT, sleep, startEdge, token, until } from "../tests/harness.mjs";

const args = { events: 20000, delays: "0,150", sizes: "200,65000", seconds: 10, part: "all" };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, "");
  args[k] = typeof args[k] === "number" ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const numbers = (list) => String(list).split(",").map(Number);

/** A receiver that holds the first POST until `release()`, then answers each after `delay` ms. */
async function receiver({ delay = 0, hold = true } = {}) {
  const got = []; // event numbers, in arrival order
  const posts = []; // { events, bytes, at }
  let held = null;
  let released = !hold;
  let bytes = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const answer = () => {
        const events = JSON.parse(body).events;
        for (const e of events) got.push(Number(e.id.slice(e.id.lastIndexOf("_") + 1)));
        bytes += body.length;
        posts.push({ events: events.length, bytes: body.length, at: performance.now() });
        res.writeHead(204).end();
      };
      if (!released) {
        held = answer;
        return;
      }
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    got,
    posts,
    get bytes() {
      return bytes;
    },
    get holding() {
      return held !== null;
    },
    release() {
      released = true;
      const h = held;
      held = null;
      h?.();
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

const SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const EVENTS = "message.published,presence.joined,presence.left,room.occupied,room.vacated";

async function drain(delay, size) {
  // At most 256 MiB of backlog (the outbox is set to take 1 GiB here).
  const total = Math.min(args.events, Math.floor((256 * 2 ** 20) / size));
  const rx = await receiver({ delay });
  const edge = await startEdge({
    logLevel: "warn",
    vars: {
      WEBHOOK_URL: rx.url,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_EVENTS: EVENTS,
      WEBHOOK_TIMEOUT_MS: 60_000,
      WEBHOOK_OUTBOX_MAX_EVENTS: 1_000_000,
      WEBHOOK_OUTBOX_MAX_BYTES: 1024 * 1024 * 1024,
      HTTP_RATE_MESSAGES_PER_SEC: 1_000_000,
      HTTP_RATE_MESSAGES_BURST: 1_000_000,
      HTTP_RATE_BYTES_PER_SEC: 1_000_000_000,
    },
  });
  try {
    const room = `bench:drain-${delay}-${size}-${Date.now()}`;
    const filler = "x".repeat(Math.max(0, size - 20));
    const perBatch = Math.max(1, Math.min(100, Math.floor((1024 * 1024) / (size + 64))));
    for (let sent = 0; sent < total; ) {
      const n = Math.min(perBatch, total - sent);
      const batch = Array.from({ length: n }, (_, i) => ({ data: { k: sent + i, f: filler } }));
      const r = await api(edge, "POST", `/rooms/${room}/messages`, batch);
      if (r.status !== 200) throw new Error(`publish: ${r.status} ${r.text.slice(0, 200)}`);
      sent += n;
    }
    await until(() => rx.holding, { what: "the first POST", timeoutMs: 30_000 });
    const stats = (await api(edge, "GET", `/rooms/${room}/stats`)).json.webhook;
    const start = performance.now();
    const before = rx.got.length;
    rx.release();
    await until(() => rx.got.length >= total, { what: "every event", timeoutMs: 600_000, intervalMs: 5 });
    const ms = performance.now() - start;
    const distinct = new Set(rx.got).size;
    const ordered = rx.got.every((n, i) => i === 0 || n > rx.got[i - 1]);
    const drained = total - before;
    const posts = rx.posts.length - 1;
    const bytes = rx.posts.slice(1).reduce((s, p) => s + p.bytes, 0);
    return {
      delay_ms: delay,
      data_bytes: size,
      backlog: stats.pending,
      drained,
      ms: Math.round(ms),
      events_per_s: Math.round((drained * 1000) / ms),
      mib_per_s: Number(((bytes * 1000) / ms / 2 ** 20).toFixed(2)),
      posts,
      events_per_post: Math.round(drained / posts),
      body_kib_per_post: Math.round(bytes / posts / 1024),
      once_in_order: distinct === total && ordered,
    };
  } finally {
    await edge.stop();
    await rx.close();
  }
}

/** One member at the room's default limits (wrangler.toml's [vars]). */
async function member(size) {
  const rx = await receiver({ hold: false });
  const edge = await startEdge({
    logLevel: "warn",
    vars: {
      WEBHOOK_URL: rx.url,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_EVENTS: EVENTS,
      WEBHOOK_OUTBOX_MAX_EVENTS: 1_000_000,
      WEBHOOK_OUTBOX_MAX_BYTES: 1024 * 1024 * 1024,
    },
  });
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
  const v = (name) => Number(toml.match(new RegExp(`^${name} = "(\\d+)"`, "m"))[1]);
  const limits = {
    sockets: v("MAX_CONNECTIONS_PER_USER"),
    perSocket: v("RATE_MESSAGES_PER_SEC"),
    socketBytes: v("RATE_BYTES_PER_SEC"),
    http: v("HTTP_RATE_MESSAGES_PER_SEC"),
    httpBytes: v("HTTP_RATE_BYTES_PER_SEC"),
    batch: v("PUBLISH_BATCH_MAX"),
  };
  const room = `bench:member-${size}-${Date.now()}`;
  const bearer = token("mallory", { "bench:*": ["subscribe", "publish", "presence"] });
  const acks = []; // ack times
  const sockets = [];
  let stop = false;
  try {
    const filler = "x".repeat(Math.max(0, size - 30));
    for (let i = 0; i < limits.sockets; i++) {
      const ws = new WebSocket(`${edge.wsUrl}/rooms/${room}/ws?cid=s${i}`, ["roomcast.v1", `bearer.${bearer}`], {
        perMessageDeflate: false,
      });
      ws.on("message", (buf) => {
        for (const line of buf.toString().split("\n")) {
          if (line.startsWith('{"type":"ack"')) acks.push(performance.now());
          // Read marks are echoed, as the SDK does (a socket that does not is closed with 4008).
          else if (line.startsWith('{"type":"mark"')) ws.send(JSON.stringify({ type: "read", id: JSON.parse(line).id }));
        }
      });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      sockets.push(ws);
    }
    const start = performance.now();
    const end = start + args.seconds * 1000;
    // Each socket paced at its limits: a frame every max(1/rate, bytes/byte-rate) seconds.
    const frame = (i, k) => JSON.stringify({ type: "publish", id: `s${i}-${k}`, data: { f: filler } });
    const frameBytes = Buffer.byteLength(frame(0, 0));
    const every = Math.max(1000 / limits.perSocket, (frameBytes * 1000) / limits.socketBytes);
    const loops = sockets.map(async (ws, i) => {
      for (let k = 0; !stop && performance.now() < end; k++) {
        const due = start + k * every;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        ws.send(frame(i, k));
      }
    });
    // HTTP with the member's own token, paced at its limits, in batches.
    const item = { data: { f: filler } };
    const itemBytes = Buffer.byteLength(JSON.stringify(item.data));
    const perBatch = Math.max(1, Math.min(limits.batch, Math.floor(limits.httpBytes / 2 / itemBytes)));
    const batchEvery = Math.max((perBatch * 1000) / limits.http, (perBatch * itemBytes * 1000) / limits.httpBytes);
    const http = (async () => {
      for (let k = 0; !stop && performance.now() < end; k++) {
        const due = start + k * batchEvery;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const res = await fetch(`${edge.url}/rooms/${room}/messages`, {
          method: "POST",
          headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
          body: JSON.stringify(Array.from({ length: perBatch }, () => item)),
        });
        const body = await res.json();
        if (res.status === 200) for (const _ of body.messages) acks.push(performance.now());
      }
    })();
    await Promise.all([...loops, http]);
    stop = true;
    await sleep(500); // the last acks
    const steady = acks.filter((t) => t >= start + 1000 && t < end);
    const rate = (steady.length * 1000) / (end - start - 1000);
    await until(() => rx.got.length >= acks.length, { what: "every event", timeoutMs: 120_000 }).catch(() => {});
    const eventBytes = rx.bytes / Math.max(1, rx.got.length);
    return {
      data_bytes: size,
      frame_bytes: frameBytes,
      sockets: limits.sockets,
      acked: acks.length,
      events_per_s: Math.round(rate),
      event_mib_per_s: Number(((rate * eventBytes) / 2 ** 20).toFixed(2)),
      theoretical_events_per_s: Math.round(
        limits.sockets * Math.min(limits.perSocket, limits.socketBytes / frameBytes) + Math.min(limits.http, limits.httpBytes / itemBytes),
      ),
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    await edge.stop();
    await rx.close();
  }
}

const results = { drain: [], member: [] };
if (args.part === "all" || args.part === "drain") {
  for (const size of numbers(args.sizes)) {
    for (const delay of numbers(args.delays)) {
      const r = await drain(delay, size);
      console.error(JSON.stringify(r));
      results.drain.push(r);
    }
  }
}
if (args.part === "all" || args.part === "member") {
  for (const size of numbers(args.sizes)) {
    const r = await member(size);
    console.error(JSON.stringify(r));
    results.member.push(r);
  }
}
const wranglerVersion = JSON.parse(readFileSync(join(ROOT, "node_modules", "wrangler", "package.json"), "utf8")).version;
console.log(
  JSON.stringify(
    {
      bench: "webhook-drain",
      at: new Date().toISOString(),
      config: args,
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cores: cpus().length,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        kernel: release(),
        node: process.version,
        wrangler: wranglerVersion,
      },
      results,
    },
    null,
    2,
  ),
);
