// A diagnostic for issue #23: what one more Durable Object per user costs in memory in this runtime,
// whatever the code in it (docs/SESSIONS.md, *Memory*). The smallest hibernatable JavaScript
// Durable Object (the bench's system B, `servers/js-do`), in four ways, each on a fresh server, in
// turns (the order reversed every round):
//   shared: N sockets in one room (one object): what a socket costs;
//   nosql:  N sockets, each in a room of its own (N objects), the class declared without SQLite
//           (key-value storage, never touched; system BK);
//   own:    the same with the class declared with SQLite, as roomcast's are, storage never touched;
//   sqlite: the same with DURABLE=1 (system S): each object creates a table and reads it in its
//           constructor, as roomcast's objects read their rows.
// nosql − shared is an object's floor, own − nosql what a SQLite-backed class adds, sqlite − own
// what using the database adds. A roomcast session is one SQLite-backed object per user, so its
// memory against a direct socket's cannot go below about (own or sqlite) ÷ shared here.
//   node bench/object-floor.mjs [--users 200] [--rounds 3]
// Prints one line per kind and round, then the medians, and writes results/<time>-object-floor.json.
// Linux only (/proc).
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { ROOT } from "../tests/harness.mjs";
import { descendants } from "./runtime.mjs";
import { SYSTEMS } from "./systems.mjs";

const flag = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const USERS = flag("users", 200);
const ROUNDS = flag("rounds", 3);
const KINDS = ["shared", "nosql", "own", "sqlite"];
const SYSTEM = { shared: "B", nosql: "BK", own: "B", sqlite: "S" };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function rssKib(root) {
  let total = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      total += Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
    } catch {
      /* exited */
    }
  }
  return total;
}

function open(url) {
  // No compression, as roomcast negotiates none (a deflate context costs more than the socket).
  const ws = new WebSocket(url, { closeTimeout: 500, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function round(n, kind) {
  const server = await SYSTEMS[SYSTEM[kind]].start();
  const url = (room) => `${server.wsUrl}/rooms/${room}/ws`;
  const sockets = [];
  try {
    // The code loaded and one object awake before the users come (for `shared`, their room).
    sockets.push(await open(url(kind === "shared" ? "shared" : "warm")));
    await sleep(1000);
    const rss0 = rssKib(server.pid);
    for (let u = 0; u < USERS; u += 10) {
      const wave = [];
      for (let k = u; k < Math.min(USERS, u + 10); k++) wave.push(open(url(kind === "shared" ? "shared" : `user${k}`)));
      sockets.push(...(await Promise.all(wave)));
    }
    const rss1 = rssKib(server.pid);
    await sleep(12_000);
    const rss2 = rssKib(server.pid);
    const row = { round: n, kind, users: USERS, kib: (rss1 - rss0) / USERS, kib12s: (rss2 - rss0) / USERS };
    console.log(`round ${n} ${kind}: ${row.kib.toFixed(1)} KiB per user, 12 s later ${row.kib12s.toFixed(1)}`);
    return row;
  } finally {
    for (const ws of sockets) ws.terminate();
    await server.stop();
  }
}

const machine = `${cpus().length} cores (${cpus()[0].model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
console.log(`${machine}\n${USERS} users, ${ROUNDS} rounds`);
const rows = [];
for (let n = 1; n <= ROUNDS; n++) {
  for (const kind of n % 2 ? KINDS : [...KINDS].reverse()) rows.push(await round(n, kind));
}
const summary = {};
for (const field of ["kib", "kib12s"]) {
  const of = (k) => rows.filter((r) => r.kind === k);
  const perRound = (k) => of(k).map((r) => r[field] / of("shared").find((s) => s.round === r.round)[field]);
  summary[field] = Object.fromEntries(
    KINDS.map((k) => [k, { kib: median(of(k).map((r) => r[field])), ratioToShared: median(perRound(k)) }]),
  );
  const s = summary[field];
  console.log(
    `${field === "kib" ? "at once" : "12 s later"}: ${KINDS.map((k) => `${k} ${s[k].kib.toFixed(1)} KiB per user (${s[k].ratioToShared.toFixed(2)} ×)`).join(", ")}`,
  );
}
const file = join(ROOT, "bench", "results", `${new Date().toISOString().replace(/[:.]/g, "-")}-object-floor.json`);
writeFileSync(file, `${JSON.stringify({ machine, users: USERS, rows, summary }, null, 1)}\n`);
console.log(file);
