// Reads what bench/native-heap.mjs recorded: the allocations made during the joins and still
// live at the end, grouped by call stack, in KiB per member; with two recordings, the
// difference, largest first.
//   node bench/native-heap-report.mjs /tmp/A [/tmp/B] [--depth 3] [--top 30]
// Each prefix is one recording (prefix.data, prefix.json). JavaScript and V8 frames are left out
// of the stacks (they differ between a Rust/wasm and a JavaScript object doing the same), and so
// are kj's promise machinery and the allocator's own; `--depth` native frames remain.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at < 0 ? fallback : Number(args.splice(at, 2)[1]);
};
const depth = option("--depth", 3);
const top = option("--top", 30);
const prefixes = args;

const NOISE = [
  "TCMalloc",
  "operator new",
  "kj::_::",
  "kj::EventLoop",
  "kj::MainBuilder",
  "kj::runMain",
  "kj::runCatching",
  "kj::Function<",
  "kj::TaskSet",
  "non-virtual thunk to kj::_::",
  "non-virtual thunk to kj::TaskSet",
  "main",
  "__libc",
  "start_thread",
  "Builtins_",
  "v8::",
  "[unknown]",
  "_ZN7workerd3jsg",
  "_ZZN7workerd3jsg",
  "workerd::jsg::",
  "workerd::IoContext::run",
  "workerd::IoContext::runImpl",
  "workerd::IoContext::runInContextScope",
  "workerd::api::ServiceWorkerGlobalScope::request",
];
const frameName = (f) => f.replace("(anonymous namespace)", "{anon}").replace(/\(.*$/, "").slice(0, 110);

/** Live allocations by stack key: [bytes, blocks], and the member count. */
async function load(prefix) {
  const { members } = JSON.parse(readFileSync(`${prefix}.json`, "utf8"));
  const perf = spawn("perf", ["script", "-i", `${prefix}.data`, "-F", "tid,event,trace,ip,sym"], { stdio: ["ignore", "pipe", "ignore"] });
  const pending = new Map(); // tid -> { size, stack, old }
  const live = new Map(); // address -> { size, key }
  let event = null;
  const finish = () => {
    if (!event) return;
    const { tid, name, args, stack } = event;
    const num = (k) => Number(new RegExp(`\\b${k}=(\\d+)`).exec(args)?.[1] ?? 0);
    if (name.startsWith("a")) {
      if (name === "a_posix_memalign") return;
      const key = stack
        .filter((f) => !NOISE.some((n) => f.startsWith(n)))
        .slice(0, depth)
        .map(frameName)
        .join(" < ");
      pending.set(tid, {
        size: num("size") * (name === "a_calloc" || name === "a_reallocarray" ? num("n") : 1),
        key,
        old: name === "a_realloc" ? num("ptr") : 0,
      });
    } else if (name.startsWith("r")) {
      const p = pending.get(tid);
      pending.delete(tid);
      if (!p) return;
      if (p.old) live.delete(p.old);
      const address = num("ret");
      if (address) live.set(address, p);
    } else {
      live.delete(num("ptr"));
    }
  };
  const lines = createInterface({ input: perf.stdout, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    const m = /^\s*(\d+)\s+probe_workerd:(\S+):\s+\([0-9a-f]+(?: <- [0-9a-f]+)?\)\s*(.*)$/.exec(line);
    if (m) {
      finish();
      event = { tid: m[1], name: m[2], args: m[3], stack: [] };
    } else if (event && line.trim()) {
      event.stack.push(line.trim().split(/\s+/).slice(1).join(" "));
    }
  }
  finish();
  const groups = new Map();
  for (const { size, key } of live.values()) {
    const g = groups.get(key) ?? [0, 0];
    g[0] += size;
    g[1] += 1;
    groups.set(key, g);
  }
  return { groups, members };
}

const runs = [];
for (const prefix of prefixes) runs.push(await load(prefix));
const per = (run, key) => {
  const g = run.groups.get(key) ?? [0, 0];
  return [g[0] / 1024 / run.members, g[1] / run.members];
};
const total = (run) => [...run.groups.values()].reduce((s, g) => s + g[0], 0) / 1024 / run.members;
console.log(prefixes.map((p, i) => `${p}: ${total(runs[i]).toFixed(2)} KiB per member live`).join(", "));
const keys = [...new Set(runs.flatMap((r) => [...r.groups.keys()]))];
const score = (k) => (runs.length > 1 ? per(runs[0], k)[0] - per(runs[1], k)[0] : per(runs[0], k)[0]);
for (const k of keys.sort((a, b) => Math.abs(score(b)) - Math.abs(score(a))).slice(0, top)) {
  const cells = runs.map((r) => {
    const [kib, blocks] = per(r, k);
    return `${kib.toFixed(2).padStart(6)} KiB in ${blocks.toFixed(2).padStart(5)}`;
  });
  const diff = runs.length > 1 ? `${score(k) >= 0 ? "+" : ""}${score(k).toFixed(2).padStart(6)}  ` : "";
  console.log(`${diff}${cells.join(" | ")}  ${k || "(allocator or JavaScript frames only)"}`);
}
// The tool the stacks came from, for the record.
console.log(`\n(${execFileSync("perf", ["--version"], { encoding: "utf8" }).trim()}; blocks per member)`);
