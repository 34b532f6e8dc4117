// `npm run bench` (quick) and `npm run bench -- --full`: the side-by-side benchmark.
//
// Every round starts each system fresh, in a random order, and runs the same scenarios against
// it with the Rust load generator (bench/src); ratios to the in-runtime limit (B) are taken within
// a round, then medians and spreads over the rounds. Writes bench/results/<stamp>.json,
// bench/results/latest.json, bench/results/chart.svg and the tables in bench/README.md.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { ROOT, tempDir } from "../tests/harness.mjs";
import { median, renderReadme } from "./report.mjs";
import { clientSizes, sdkParts, workerSizes } from "./sizes.mjs";
import { SYSTEMS } from "./systems.mjs";

const BENCH = join(ROOT, "bench");
const LOADGEN = join(BENCH, "target", "release", "roomcast-bench");
const KNEE_P99_MS = 250;
const DRAIN_SECONDS = 2;

const args = process.argv.slice(2);
const full = args.includes("--full");
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

// Offered loads in deliveries per second, climbing until a system passes its knee. Latency and
// CPU per delivery are compared at REFERENCE (one of the steps); the full run starts lower so that
// a knee below it is still found.
const REFERENCE = 20e3;
const LADDER =
  option("--ladder")?.split(",").map(Number)
  ?? (full ? [5e3, 10e3, 20e3, 40e3, 70e3, 100e3, 150e3, 220e3] : [20e3, 40e3, 60e3, 80e3, 120e3]);
// --scenarios picks from every scenario, whatever the mode.
const SCENARIOS = (
  full || option("--scenarios")
    ? [
        [100, 10],
        [10, 100],
        [1, 1000],
        [1, 5000],
      ].flatMap(([rooms, members]) => [64, 1024].map((size) => ({ rooms, members, size })))
    : [{ rooms: 1, members: 1000, size: 64 }]
).map((s) => ({
  ...s,
  id: `${s.rooms}x${s.members}-${s.size}B`,
  name: `${s.rooms} × ${s.members}, ${s.size === 1024 ? "1 KiB" : `${s.size} B`}`,
}));
const scenarios = option("--scenarios") ? SCENARIOS.filter((s) => option("--scenarios").split(",").includes(s.id)) : SCENARIOS;
const systems = (
  option("--systems")
  ?? Object.keys(SYSTEMS)
    .filter((id) => !SYSTEMS[id].control)
    .join(",")
).split(",");
const rounds = Number(option("--rounds") ?? 5);
const stepSeconds = Number(option("--step-seconds") ?? 2);
// Slots per system per offered load (see runInterleaved): more slots, finer ratios, longer runs.
const SLOTS = Number(option("--slots") ?? 3);
// A focused run (a chosen ladder, systems or scenarios) answers one question: it writes its own
// results file and prints per-step ratios, and leaves latest.json, the chart and the README alone.
const focus = ["--ladder", "--systems", "--scenarios", "--step-seconds", "--slots"].some((o) => option(o) !== undefined);
const mode = focus ? "focus" : full ? "full" : "quick";

function shuffle(list) {
  const a = [...list];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Two members of one room; resolves when one receives what the other sent. */
async function firstEcho(system, server) {
  const url = system.url(server).replace("{room}", "coldstart");
  const open = async (cid) => {
    const ws = new WebSocket(url.replace("{cid}", cid), { perMessageDeflate: false });
    const texts = [];
    const waiters = [];
    ws.on("message", (d) => {
      texts.push(d.toString());
      for (const w of waiters.splice(0)) w();
    });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const until = async (pred) => {
      while (!texts.some(pred)) await new Promise((r) => waiters.push(r));
    };
    if (system.protocol.startsWith("roomcast")) await until((t) => t.includes('"type":"welcome"'));
    if (system.protocol === "socket_io") {
      await until((t) => t.startsWith("0"));
      ws.send("40");
      await until((t) => t.startsWith("40"));
      ws.send('42["join","coldstart"]');
      await until((t) => t.startsWith('42["joined"'));
    }
    return { ws, until };
  };
  const a = await open("a");
  const b = await open("b");
  const text = '"echo"';
  const roomcastFrame = system.protocol === "roomcast_broadcast" ? "broadcast" : "publish";
  a.ws.send(
    system.protocol.startsWith("roomcast")
      ? `{"type":"${roomcastFrame}","id":"1","data":${text}}`
      : system.protocol === "socket_io"
        ? `42["m",${text}]`
        : text,
  );
  await b.until((t) => t.includes("echo"));
  a.ws.terminate();
  b.ws.terminate();
}

/**
 * Every system of the round against `scenario`, interleaved (`roomcast-bench interleave`): all
 * servers up with their members connected, each offered load given to one system at a time in
 * slots of `stepSeconds`, SLOTS per system per load, in alternating order. Returns each system's
 * result (one step per load: its slots added up) by id.
 */
function runInterleaved(servers, scenario) {
  const config = {
    targets: servers.map(({ id, system, server }) => ({
      name: id,
      protocol: system.protocol,
      url: system.url(server),
      server_pid: server.pid,
    })),
    rooms: scenario.rooms,
    members: scenario.members,
    publishers_per_room: Math.min(scenario.members, 5),
    size: scenario.size,
    levels: LADDER.map((d) => d / (scenario.members - 1)),
    slot_seconds: stepSeconds,
    slots: SLOTS,
    // One slot per system at the first load before the measured ones (first writes, JIT tiers).
    warmup_seconds: Math.max(1, stepSeconds / 2),
    knee_p99_ms: KNEE_P99_MS,
    drain_seconds: DRAIN_SECONDS,
  };
  const file = join(tempDir("bench"), "config.json");
  writeFileSync(file, JSON.stringify(config));
  const out = JSON.parse(
    execFileSync(LOADGEN, ["interleave", file], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26 }),
  );
  return Object.fromEntries(out.map(({ name, result }) => [name, result]));
}

function machine() {
  const wranglerVersion = JSON.parse(readFileSync(join(ROOT, "node_modules", "wrangler", "package.json"), "utf8")).version;
  const workerdVersion = JSON.parse(readFileSync(join(ROOT, "node_modules", "workerd", "package.json"), "utf8")).version;
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memory_gib: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    wrangler: wranglerVersion,
    workerd: workerdVersion,
  };
}

/** Writes the chart and the README tables for `results` (a run just made, or `--report <file>`). */
function report(results) {
  const dir = join(BENCH, "results");
  const { chart, readme } = renderReadme(results, readFileSync(join(BENCH, "README.md"), "utf8"));
  const chartFile = join(tempDir("bench"), "chart.json");
  writeFileSync(chartFile, JSON.stringify(chart));
  execFileSync(LOADGEN, ["chart", chartFile, join(dir, "chart.svg")], { stdio: "inherit" });
  writeFileSync(join(BENCH, "README.md"), readme);
}

/**
 * For a focused run: per scenario and offered load, each system's CPU µs per delivery (median,
 * and its kernel share) and the median over rounds of its ratio to B in the same round. Only
 * steps within the knee for both count.
 */
function printStepRatios(results) {
  for (const scenario of results.scenarios) {
    console.log(`\n${scenario.id}: CPU µs/delivery, median (kernel share) [min–max]; ratio to B, median [min–max] over rounds`);
    for (const [i, load] of results.ladder_deliveries_per_s.entries()) {
      const at = (round, system) => {
        const r = results.runs.find((x) => x.round === round && x.system === system && x.scenario === scenario.id);
        const step = r?.result.steps[i];
        return step?.within_knee ? step : undefined;
      };
      const cells = Object.keys(results.systems).map((id) => {
        const steps = [],
          ratios = [];
        for (let round = 1; round <= rounds; round++) {
          const s = at(round, id),
            b = at(round, "B");
          if (!s) continue;
          steps.push(s);
          if (b) ratios.push(s.cpu_us_per_delivery / b.cpu_us_per_delivery);
        }
        if (!steps.length) return `${id} –`;
        const cpu = steps.map((s) => s.cpu_us_per_delivery);
        const sys = median(steps.map((s) => s.system_cpu_us_per_delivery / s.cpu_us_per_delivery));
        const ratio = ratios.length
          ? ` ×${median(ratios).toFixed(2)} [${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}]`
          : "";
        return `${id} ${median(cpu).toFixed(1)} (${Math.round(sys * 100)}%) [${Math.min(...cpu).toFixed(1)}–${Math.max(...cpu).toFixed(1)}]${ratio}`;
      });
      console.log(`  ${load}/s: ${cells.join(";  ")}`);
    }
  }
}

async function main() {
  if (option("--report")) {
    report(JSON.parse(readFileSync(option("--report"), "utf8")));
    console.log(`rendered bench/results/chart.svg and the tables in bench/README.md from ${option("--report")}`);
    return;
  }
  const started = new Date();
  const runs = [];
  const dir = join(BENCH, "results");
  mkdirSync(dir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  // The results so far, after every round: a long run that is cut short still leaves its rounds.
  const collect = async (sizes) => ({
    mode,
    started: started.toISOString(),
    seconds: Math.round((Date.now() - started.getTime()) / 1000),
    machine: machine(),
    knee_p99_ms: KNEE_P99_MS,
    ladder_deliveries_per_s: LADDER,
    reference_deliveries_per_s: REFERENCE,
    step_seconds: stepSeconds,
    method: "interleaved",
    slots: SLOTS,
    drain_seconds: DRAIN_SECONDS,
    systems: Object.fromEntries(systems.map((id) => [id, SYSTEMS[id].label])),
    scenarios,
    sizes,
    runs,
  });
  console.log(`roomcast bench (${mode}): ${rounds} rounds × systems ${systems.join(" ")} × ${scenarios.map((s) => s.id).join(" ")}`);
  for (let round = 1; round <= rounds; round++) {
    const order = shuffle(systems);
    console.log(`\nround ${round}: ${order.join(" ")}`);
    // Fresh servers per scenario: an overloaded step leaves a backlog that must not leak into
    // the next scenario. They start one after another (cold start measured alone), then take
    // turns under load.
    for (const scenario of scenarios) {
      const servers = [];
      try {
        for (const id of order) {
          const system = SYSTEMS[id];
          const t0 = performance.now();
          const server = await system.start();
          servers.push({ id, system, server });
          await firstEcho(system, server);
          servers.at(-1).coldStartMs = performance.now() - t0;
        }
        const results = runInterleaved(servers, scenario);
        for (const { id, coldStartMs } of servers) {
          const result = results[id];
          runs.push({ round, system: id, scenario: scenario.id, cold_start_ms: coldStartMs, result });
          const ref = result.steps[LADDER.indexOf(REFERENCE)];
          const knee = Math.max(0, ...result.steps.filter((s) => s.within_knee).map((s) => s.deliveries_per_s));
          const atRef = ref
            ? `at ${Math.round(ref.offered_deliveries_per_s)}/s p50 ${ref.p50_ms} ms p99 ${ref.p99_ms} ms, ${ref.cpu_us_per_delivery.toFixed(2)} µs CPU/delivery`
            : "stopped below the reference load";
          console.log(
            `  ${id} ${scenario.id}: knee ${Math.round(knee)}/s; ${atRef}; idle ${result.idle_kib_per_connection.toFixed(1)} KiB/conn; cold start ${Math.round(coldStartMs)} ms`,
          );
        }
      } finally {
        await Promise.all(servers.map(({ server }) => server.stop()));
      }
    }
    writeFileSync(join(dir, `${stamp}-${mode}.partial.json`), `${JSON.stringify(await collect({}), null, 1)}\n`);
  }
  const results = await collect({ workers: workerSizes(), clients: await clientSizes(), sdk: sdkParts() });
  writeFileSync(join(dir, `${stamp}-${results.mode}.json`), `${JSON.stringify(results, null, 1)}\n`);
  rmSync(join(dir, `${stamp}-${mode}.partial.json`), { force: true });
  if (focus) {
    printStepRatios(results);
    console.log(`\nwrote bench/results/${stamp}-${results.mode}.json (${results.seconds} s)`);
    return;
  }
  writeFileSync(join(dir, "latest.json"), `${JSON.stringify(results, null, 1)}\n`);
  report(results);
  console.log(
    `\nwrote bench/results/${stamp}-${results.mode}.json, bench/results/chart.svg and the tables in bench/README.md (${results.seconds} s)`,
  );
}

await main();
