// The native Rust client (`client/`, roomcast-client) next to the load generator (bench/src), in
// the same runs (issue #25): what one message costs the client process, received or sent.
//   node bench/native-client.mjs [--members 20] [--publishers 5] [--rate 250] [--size 64]
//        [--rounds 3] [--slots 2] [--slot-seconds 4] [--warmup-seconds 1] [--baseline <binary>]
// Needs the Worker built (scripts/build-worker.sh), the generator (cargo build --release
// --manifest-path bench/Cargo.toml) and the client's bench example (cargo build --release -p
// roomcast-client --example load).
// Each round starts roomcast (the bench's system A: its limits lifted, the runtime's own port) on a
// fresh server. Then two client systems take turns in ABBA slots (the order reversed every round):
// `generator`: `roomcast-bench run`, one room of --members sockets, --publishers of them publishing
// stored messages (`publish` frames with an id) open-loop at --rate messages/s in all; `native`:
// client/examples/load.rs, the same room shape and load from --members roomcast-client clients in
// one process (each a `Client::connect`, publishing with `Room::publish_json`, reading `Events`).
// Both send the same payloads (bench/src/wire.rs) and are measured the same way: the process's own
// utime + stime from /proc over a slot (first send until every delivery arrived, after a warm-up
// phase on the same sockets), divided by the messages it handled: sent + delivered (acks are part
// of a send). Each slot is a fresh process with fresh sockets in a fresh room. A system's slots add
// up to its round; the ratio native ÷ generator is taken per round, then the median.
// --baseline <binary>: a third system, `baseline`: another build of the example (e.g. main's, copied
// out of target/release/examples/load), in the same slots, so a change to the client is measured
// against the build before it (its ratios: baseline ÷ generator, native ÷ baseline).
// Writes results/<time>-native-client.json. Linux only (/proc).
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { ROOT, token } from "../tests/harness.mjs";
import { SYSTEMS } from "./systems.mjs";

const flag = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const MEMBERS = flag("members", 20);
const PUBLISHERS = flag("publishers", 5);
const RATE = flag("rate", 250); // messages per second, all publishers together
const SIZE = flag("size", 64);
const ROUNDS = flag("rounds", 3);
const SLOTS = flag("slots", 2);
const SLOT_SECONDS = flag("slot-seconds", 4);
const WARMUP_SECONDS = flag("warmup-seconds", 1);
const baseAt = process.argv.indexOf("--baseline");
const BASELINE = baseAt < 0 ? null : process.argv[baseAt + 1];

const LOADGEN = join(ROOT, "bench", "target", "release", "roomcast-bench");
const NATIVE = join(ROOT, "target", "release", "examples", "load");
const RESULTS = join(ROOT, "bench", "results");
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function exec(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b) => {
      out += b;
    });
    child.stderr.on("data", (b) => {
      err += b;
    });
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err.trim()}`))));
  });
}

const bearer = () => token("bench", { "bench:*": ["subscribe", "publish"] }, { ttlSeconds: 86_400 });

/** One slot of the load generator: its own CPU over the measured step. */
async function generator(server, room) {
  const config = {
    protocol: "roomcast",
    url: `${server.wsUrl}/rooms/bench:${room}-{room}/ws?cid={cid}&token=${bearer()}`,
    rooms: 1,
    members: MEMBERS,
    publishers_per_room: PUBLISHERS,
    size: SIZE,
    steps: [
      { msgs_per_s: RATE, seconds: WARMUP_SECONDS },
      { msgs_per_s: RATE, seconds: SLOT_SECONDS },
    ],
    server_pid: server.pid,
    knee_p99_ms: 250,
    stop_after_knee: false,
    warmup_steps: 1,
  };
  const file = join(RESULTS, `.native-client-${process.pid}.json`);
  writeFileSync(file, JSON.stringify(config));
  const result = JSON.parse(await exec(LOADGEN, ["run", file]));
  const step = result.steps[0];
  return {
    sent: step.sent,
    expected: step.expected,
    delivered: step.delivered,
    cpu_seconds: step.generator_cpu_seconds,
    server_cpu_seconds: step.server_cpu_seconds,
    p99_ms: step.p99_ms,
  };
}

/** One slot of the native client: its own CPU over the measured phase. */
async function native(server, room, binary = NATIVE) {
  const args = [server.wsUrl, `bench:${room}`, bearer(), MEMBERS, PUBLISHERS, RATE, SLOT_SECONDS, SIZE, WARMUP_SECONDS];
  const result = JSON.parse(await exec(binary, args.map(String)));
  const step = result.steps.find((s) => s.step === 1);
  return { sent: step.sent, acked: step.acked, expected: step.expected, delivered: step.delivered, cpu_seconds: step.cpu_seconds };
}

const KINDS = { generator, native };
if (BASELINE) KINDS.baseline = (server, room) => native(server, room, BASELINE);
const names = Object.keys(KINDS);
mkdirSync(RESULTS, { recursive: true });
const started = new Date();
const machine = { cpus: cpus().length, model: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30), loadavg_before: loadavg() };
console.log(
  `native client vs load generator: 1 room × ${MEMBERS}, ${PUBLISHERS} publishing ${RATE} msgs/s (${RATE * (MEMBERS - 1)} deliveries/s), ${SIZE} B, ${ROUNDS} rounds × ${SLOTS} slots × ${SLOT_SECONDS} s`,
);
console.log(`machine: ${machine.cpus} × ${machine.model}, load average ${machine.loadavg_before.map((x) => x.toFixed(2)).join(" ")}`);
const rounds = [];
for (let round = 1; round <= ROUNDS; round++) {
  const server = await SYSTEMS.A.start();
  const totals = Object.fromEntries(names.map((k) => [k, { cpu: 0, handled: 0, lost: 0 }]));
  const slots = [];
  try {
    // ABBA (ABCCBA), the first system rotated every round.
    const first = names.slice(round % names.length).concat(names.slice(0, round % names.length));
    const order = [];
    for (let s = 0; s < SLOTS; s++) order.push(...(s % 2 ? [...first].reverse() : first));
    for (const [i, kind] of order.entries()) {
      const r = await KINDS[kind](server, `${kind[0]}${round}-${i}`);
      const handled = r.sent + r.delivered;
      totals[kind].cpu += r.cpu_seconds;
      totals[kind].handled += handled;
      totals[kind].lost += r.expected - r.delivered;
      slots.push({ kind, ...r, us_per_message: (r.cpu_seconds * 1e6) / handled });
    }
  } finally {
    await server.stop();
  }
  const us = (kind) => (totals[kind].cpu * 1e6) / totals[kind].handled;
  const result = {
    round,
    generator_us_per_message: us("generator"),
    native_us_per_message: us("native"),
    ratio: us("native") / us("generator"),
    lost: Object.fromEntries(names.map((k) => [k, totals[k].lost])),
    slots,
  };
  if (BASELINE) {
    result.baseline_us_per_message = us("baseline");
    result.baseline_ratio = us("baseline") / us("generator");
    result.native_vs_baseline = us("native") / us("baseline");
  }
  rounds.push(result);
  const base = BASELINE
    ? `; baseline ${result.baseline_us_per_message.toFixed(2)} µs/msg (÷ generator ${result.baseline_ratio.toFixed(2)}), native ÷ baseline ${result.native_vs_baseline.toFixed(2)}`
    : "";
  console.log(
    `round ${round}: generator ${result.generator_us_per_message.toFixed(2)} µs/msg, native ${result.native_us_per_message.toFixed(2)} µs/msg, native ÷ generator ${result.ratio.toFixed(2)}${base} (lost: ${JSON.stringify(result.lost)})`,
  );
}
machine.loadavg_after = loadavg();
const summary = {
  generator_us_per_message: median(rounds.map((r) => r.generator_us_per_message)),
  native_us_per_message: median(rounds.map((r) => r.native_us_per_message)),
  ratio: median(rounds.map((r) => r.ratio)),
  ratio_min: Math.min(...rounds.map((r) => r.ratio)),
  ratio_max: Math.max(...rounds.map((r) => r.ratio)),
};
if (BASELINE) {
  summary.baseline_us_per_message = median(rounds.map((r) => r.baseline_us_per_message));
  summary.baseline_ratio = median(rounds.map((r) => r.baseline_ratio));
  summary.native_vs_baseline = median(rounds.map((r) => r.native_vs_baseline));
  summary.native_vs_baseline_range = [
    Math.min(...rounds.map((r) => r.native_vs_baseline)),
    Math.max(...rounds.map((r) => r.native_vs_baseline)),
  ];
}
console.log(
  `median: generator ${summary.generator_us_per_message.toFixed(2)} µs/msg, native ${summary.native_us_per_message.toFixed(2)} µs/msg, native ÷ generator ${summary.ratio.toFixed(2)} (${summary.ratio_min.toFixed(2)}–${summary.ratio_max.toFixed(2)}); load average after ${machine.loadavg_after.map((x) => x.toFixed(2)).join(" ")}`,
);
const stamp = started.toISOString().replace(/[:.]/g, "-");
const out = join(RESULTS, `${stamp}-native-client.json`);
const config = { MEMBERS, PUBLISHERS, RATE, SIZE, ROUNDS, SLOTS, SLOT_SECONDS, WARMUP_SECONDS, BASELINE };
writeFileSync(out, `${JSON.stringify({ started: started.toISOString(), machine, config, summary, rounds }, null, 1)}\n`);
rmSync(join(RESULTS, `.native-client-${process.pid}.json`), { force: true });
if (BASELINE) {
  const [lo, hi] = summary.native_vs_baseline_range;
  console.log(
    `baseline ${summary.baseline_us_per_message.toFixed(2)} µs/msg (÷ generator ${summary.baseline_ratio.toFixed(2)}); native ÷ baseline ${summary.native_vs_baseline.toFixed(2)} (${lo.toFixed(2)}–${hi.toFixed(2)})`,
  );
}
console.log(`wrote ${out}`);
