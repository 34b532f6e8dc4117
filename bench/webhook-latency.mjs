// Publish -> fanout latency with webhooks off and on, where "on" posts to a receiver that never
// answers (it accepts the connection, reads the request and holds it: every delivery runs into
// WEBHOOK_TIMEOUT_MS, then the room backs off). Issue #16's target: within 10 % of off.
// Not a timed test: a benchmark figure, on whatever machine runs it (printed with the results).
//
//   node bench/webhook-latency.mjs [--rounds 5] [--messages 2000] [--rate 100] [--members 10]
//
// Configurations, interleaved in a fresh random order every round, each on a fresh wrangler dev:
//   off       WEBHOOK_URL empty
//   on        WEBHOOK_URL set, default events (presence and occupancy: nothing per message)
//   on+msgs   WEBHOOK_URL set and message.published: one more outbox row written per message
// Clients are raw WebSocket clients (`ws`) on the runtime's own port (as `npm run bench` does: the
// dev proxy does not exist in production). Two members publish at `rate` messages/s in total,
// open-loop (each send is scheduled in advance; latency counts from the scheduled time); every
// member records each message's arrival; the publisher records its ack. Each configuration's
// first 10 % of messages are a warm-up and not counted.

import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { faultReceiver, webhookSecret } from "../tests/chaos/fault-receiver.mjs";
import { ROOT, startEdge, tempDir, token } from "../tests/harness.mjs";
import { workerRuntime } from "./runtime.mjs";

const args = { rounds: 5, messages: 2000, rate: 100, members: 10 };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = Number(process.argv[i + 1]);

// As `npm run bench` runs roomcast: without [assets] and [build] (the asset router adds two pipe
// hops per frame locally), per-connection limits lifted for the offered load.
function config() {
  const sections = readFileSync(join(ROOT, "wrangler.toml"), "utf8").split(/^(?=\[)/m);
  const kept = sections.filter((s) => !/^\[(assets|build)\]/.test(s)).join("");
  const dir = tempDir("hooks-bench-config");
  writeFileSync(
    join(dir, "wrangler.toml"),
    kept.replace(/^main = "(.*)"$/m, (_, main) => `main = ${JSON.stringify(join(ROOT, main))}`),
  );
  copyFileSync(join(ROOT, ".dev.vars"), join(dir, ".dev.vars"));
  return join(dir, "wrangler.toml");
}
const LIFTED = {
  UPGRADE_LIMITER: "",
  RATE_MESSAGES_PER_SEC: 1_000_000,
  RATE_MESSAGES_BURST: 1_000_000,
  RATE_BYTES_PER_SEC: 1_000_000_000,
  HEARTBEAT_TIMEOUT_MS: 3_600_000,
};
const isWorker = async (r) => r.status === 200 || (r.status === 404 && (await r.text()).includes("docs/PROTOCOL.md"));

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function runOnce(name, receiverUrl, secret) {
  const vars = { ...LIFTED };
  if (name !== "off") {
    Object.assign(vars, { WEBHOOK_URL: receiverUrl, WEBHOOK_SECRET: secret });
    if (name === "on+msgs") vars.WEBHOOK_EVENTS = "message.published,presence.joined,presence.left,room.occupied,room.vacated";
  }
  const edge = await startEdge({ config: config(), vars, logLevel: "warn", ready: isWorker });
  try {
    const runtime = await workerRuntime(edge.pid, isWorker);
    const room = `bench:hooks-${name.replace("+", "-")}-${Date.now()}`;
    const fanout = [],
      acks = [];
    const warm = Math.floor(args.messages / 10);
    const sockets = [];
    const pending = new Map(); // id -> scheduled time
    for (let i = 0; i < args.members; i++) {
      const bearer = token(`m${i}`, { "bench:*": ["subscribe", "publish", "presence"] });
      const ws = new WebSocket(`ws://127.0.0.1:${runtime.port}/rooms/${room}/ws?cid=m${i}`, ["roomcast.v1", `bearer.${bearer}`], {
        perMessageDeflate: false,
      });
      ws.on("message", (buf) => {
        const now = performance.now();
        for (const line of buf.toString().split("\n")) {
          if (line.startsWith('{"type":"message"')) {
            const f = JSON.parse(line);
            if (f.data.k >= warm) fanout.push(now - f.data.t);
          } else if (line.startsWith('{"type":"ack"')) {
            const f = JSON.parse(line);
            const t = pending.get(f.id);
            pending.delete(f.id);
            if (t !== undefined && Number(f.id.slice(1)) >= warm) acks.push(now - t);
          }
        }
      });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      sockets.push(ws);
    }
    const expected = args.messages * (args.members - 1);
    const start = performance.now() + 200;
    for (let k = 0; k < args.messages; k++) {
      const t = start + (k * 1000) / args.rate;
      const wait = t - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait)); // the schedule, open-loop
      pending.set(`p${k}`, t);
      sockets[k % 2].send(JSON.stringify({ type: "publish", id: `p${k}`, data: { k, t } }));
    }
    const deadline = performance.now() + 30_000;
    while ((fanout.length < expected - warm * (args.members - 1) || pending.size > 0) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50)); // until every delivery and ack is in, or 30 s
    }
    for (const ws of sockets) ws.terminate();
    fanout.sort((a, b) => a - b);
    acks.sort((a, b) => a - b);
    const counted = expected - warm * (args.members - 1);
    return {
      name,
      deliveries: fanout.length,
      missing: counted - fanout.length,
      unacked: pending.size,
      fanout_p50_ms: quantile(fanout, 0.5),
      fanout_p99_ms: quantile(fanout, 0.99),
      ack_p50_ms: quantile(acks, 0.5),
      ack_p99_ms: quantile(acks, 0.99),
    };
  } finally {
    await edge.stop();
  }
}

const secret = webhookSecret();
const receiver = await faultReceiver({ secret, mode: "never" });
const names = ["off", "on", "on+msgs"];
const rounds = [];
console.error(
  `webhook latency: ${args.rounds} rounds × ${names.join(", ")}; ${args.members} members, ${args.messages} messages at ${args.rate}/s`,
);
for (let r = 0; r < args.rounds; r++) {
  const order = [...names].sort(() => Math.random() - 0.5);
  const round = {};
  for (const name of order) {
    round[name] = await runOnce(name, receiver.url, secret);
    const x = round[name];
    console.error(
      `round ${r + 1} ${name}: fanout p50 ${x.fanout_p50_ms.toFixed(2)} ms p99 ${x.fanout_p99_ms.toFixed(2)} ms, ack p50 ${x.ack_p50_ms.toFixed(2)} ms p99 ${x.ack_p99_ms.toFixed(2)} ms (missing ${x.missing}, unacked ${x.unacked})`,
    );
  }
  rounds.push(round);
}
const requestsHeld = receiver.counts.never;
await receiver.close();
const summary = {};
for (const name of names) {
  const pick = (k) => median(rounds.map((r) => r[name][k]));
  summary[name] = {
    fanout_p50_ms: pick("fanout_p50_ms"),
    fanout_p99_ms: pick("fanout_p99_ms"),
    ack_p50_ms: pick("ack_p50_ms"),
    ack_p99_ms: pick("ack_p99_ms"),
  };
}
const ratios = {};
for (const name of ["on", "on+msgs"]) {
  for (const k of ["fanout_p50_ms", "fanout_p99_ms", "ack_p50_ms", "ack_p99_ms"]) {
    const rs = rounds.map((r) => r[name][k] / r.off[k]);
    ratios[`${name} ÷ off ${k.replace("_ms", "")}`] = { median: median(rs), min: Math.min(...rs), max: Math.max(...rs) };
  }
}
const wranglerVersion = JSON.parse(readFileSync(join(ROOT, "node_modules", "wrangler", "package.json"), "utf8")).version;
console.log(
  JSON.stringify(
    {
      bench: "webhook-latency",
      at: new Date().toISOString(),
      config: args,
      receiverRequestsHeld: requestsHeld,
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cores: cpus().length,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        kernel: release(),
        node: process.version,
        wrangler: wranglerVersion,
      },
      summary,
      ratios,
      rounds,
    },
    null,
    2,
  ),
);
