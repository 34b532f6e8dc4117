// A diagnostic: which of the runtime's native (malloc) allocations made while members join a room
// are still live once they have joined, by call stack, for one system.
//   node bench/native-heap.mjs A 200 /tmp/out      (system, members, output prefix)
// workerd links tcmalloc statically, so heaptrack's LD_PRELOAD sees none of its allocations; this
// traces tcmalloc's entry points with uprobes instead (bench/native-heap-probes.sh adds them, as
// root) and records them with `perf record` on the runtime's process during the joins only (after
// the room's first member woke it). bench/native-heap-report.mjs reads `perf script`'s output.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import WebSocket from "ws";
import { SYSTEMS } from "./systems.mjs";

const [id = "A", membersArg = "200", out = "/tmp/native-heap"] = process.argv.slice(2);
const members = Number(membersArg);
const idle = (ms) => new Promise((r) => setTimeout(r, ms));

async function join(system, server, member) {
  const url = system.url(server).replace("{room}", "r0").replace("{cid}", `m${member}`);
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error(`${system.label}: member ${member} not in within 30 s`)), 30_000).unref();
    ws.once("error", reject);
    if (system.protocol.startsWith("roomcast")) {
      ws.on("message", (d) => {
        if (d.toString().includes('"type":"welcome"')) resolve();
      });
    } else {
      ws.once("open", resolve);
    }
  });
  return ws;
}

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);

const system = SYSTEMS[id];
const server = await system.start();
const sockets = [];
try {
  sockets.push(await join(system, server, "warm"));
  await idle(1000);
  // Allocation entries with their stacks; returns and frees without.
  const events = readFileSync("/sys/kernel/tracing/uprobe_events", "utf8")
    .split("\n")
    .map((l) => /^[pr]:probe_workerd\/(\S+)/.exec(l)?.[1])
    .filter(Boolean)
    .flatMap((e) => ["-e", `probe_workerd:${e}/call-graph=${e.startsWith("a") ? "fp" : "no"}/`]);
  const perf = spawn("perf", ["record", "-q", "-m", "16M", "-o", `${out}.data`, "-p", String(server.pid), ...events], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  await idle(3000);
  const rss0 = rss(server.pid);
  for (let m = 0; m < members; m += 50) {
    const wave = [];
    for (let k = m; k < Math.min(members, m + 50); k++) wave.push(join(system, server, k));
    sockets.push(...(await Promise.all(wave)));
  }
  await idle(2000);
  const rss1 = rss(server.pid);
  perf.kill("SIGINT");
  await new Promise((r) => perf.once("exit", r));
  const summary = { id, members, rssKibPerConnection: (rss1 - rss0) / members };
  writeFileSync(`${out}.json`, JSON.stringify(summary));
  console.log(JSON.stringify(summary));
} finally {
  for (const ws of sockets) ws.terminate();
  await server.stop();
}
