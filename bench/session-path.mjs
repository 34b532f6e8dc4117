// A diagnostic for issue #23: the session path (`GET /session/ws`, one socket per user for any
// number of rooms) against direct room sockets (`/rooms/:room/ws`), side by side, on fresh
// servers, in interleaved rounds (docs/SESSIONS.md, *Measured*).
//   node bench/session-path.mjs [--rooms 20] [--members 10] [--rate 2000] [--rounds 3]
//        [--slots 2] [--slot-seconds 5] [--memory-users 200] [--memory-rooms 50] [--skip-load] [--skip-memory]
//        [--memory-kinds direct,session[,session1,devices,devices1]] [--memory-v8]
//        [--perf DIR] [--baseline <index.js>]
// 1. Load. Both systems are roomcast (the bench's system A: its wrangler.toml without the demo's
//    assets, its limits lifted as in systems.mjs, the runtime's own port, the runtime's process
//    measured). `direct`: rooms × members, each member its own user with its own socket to its
//    room. `session`: the same members, each its own user with one session socket that joined its
//    room (`echo: false`, as a direct socket's default). One member of each room publishes stored
//    messages (`publish`) at a fixed rate, open-loop (each send scheduled in advance, latency
//    counted from the scheduled time), so deliveries/s = rooms × rate per room × (members − 1).
//    Latency: from the scheduled send (a timestamp in the data) to the `message` frame at every
//    other member, one clock. CPU: utime + stime of the runtime's process tree from /proc, from a
//    slot's first send until its last delivery arrived, divided by the deliveries. Each round
//    starts both servers fresh and connects both; after an unmeasured warm-up slot each, the
//    systems take turns in slots of --slot-seconds (ABBA, the order reversed every round), each
//    slot starting only once the runtimes are idle; a system's slots add up to its round.
// 2. Memory: resident memory of the runtime's process tree per connected user, for (a) a direct
//    socket in one room and (b) a session socket joined to --memory-rooms rooms; each on a fresh
//    server, in turns (the order reversed every round). Before the users come, every room is awake
//    (a warm member in each; for (b) a warm session user that joined them all, so the session's
//    code is loaded too); then --memory-users users connect, (a) spread evenly over the rooms.
//    Per user: rss after − before, at once, 2 s and 12 s later (once the objects could hibernate).
//    `session1` (with --memory-kinds): a session socket joined to one room of the same awake rooms
//    (spread as (a)), which splits (b) into what a session costs and what each more room adds.
//    `devices` / `devices1`: as `session` / `session1`, but all the sockets are devices of one
//    user (one Session object for all, one feed subscription per room): what stays per room is
//    what a device's join costs, without a Session object, a room's subscriber or the calls
//    between a pair of objects per user. --memory-v8: each row also has the Worker's V8 heap
//    (used, total; through wrangler's inspector; garbage included, wasm memory outside it) after
//    − before. For the 1-room kinds: in one 50-room run with it, wrangler's inspector proxy grew
//    to 1.6 GB and the run stalled (its inspector events for every call between objects).
// --baseline <index.js>: a third system in the load rounds, `baseline`: the session path served by
//    another build of the Worker (e.g. main's, copied out of worker/build), interleaved with the
//    other two, so a change is measured against the build before it in the same rounds (its
//    ratios: baseline ÷ direct, and session ÷ baseline).
// --perf DIR: `perf record -g` on the runtime's process during every measured slot, one file per
//    slot (DIR/<kind>-r<round>-<n>.data; `perf report -i` them). Needs perf and root; it adds its
//    own cost to the CPU figures, so a run with it is for the profile, not the ratios.
// Prints one line per system and round, then medians and ratios (session ÷ direct), and writes
// everything to results/<time>-session-path.json. Linux only (/proc).
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { quantile, ROOT, token } from "../tests/harness.mjs";
import { descendants } from "./runtime.mjs";
import { SYSTEMS } from "./systems.mjs";

const flag = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const ROOMS = flag("rooms", 20);
const MEMBERS = flag("members", 10);
const RATE = flag("rate", 2000); // deliveries per second, all rooms together
const ROUNDS = flag("rounds", 3);
const SLOTS = flag("slots", 2); // measured slots per system per round
const SLOT_MS = flag("slot-seconds", 5) * 1000;
const MEM_USERS = flag("memory-users", 200);
const MEM_ROOMS = flag("memory-rooms", 50);
const V8 = process.argv.includes("--memory-v8");
const kindsAt = process.argv.indexOf("--memory-kinds");
const MEM_KINDS = kindsAt < 0 ? ["direct", "session"] : process.argv[kindsAt + 1].split(",");
const perfAt = process.argv.indexOf("--perf");
const PERF_DIR = perfAt < 0 ? null : process.argv[perfAt + 1];
if (PERF_DIR) mkdirSync(PERF_DIR, { recursive: true });
let perfSlots = 0;
const baseAt = process.argv.indexOf("--baseline");
const BASELINE = baseAt < 0 ? null : process.argv[baseAt + 1];
const KINDS = BASELINE ? ["direct", "session", "baseline"] : ["direct", "session"];
const PER_ROOM = RATE / ROOMS / (MEMBERS - 1); // publishes per second per room
const PAYLOAD = 64; // bytes of data, as the bench's 64 B scenarios

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const RIGHTS = { "bench:*": ["subscribe", "publish"] };
const TICK = 100; // clock ticks per second in /proc (CLK_TCK on Linux)

/** utime + stime of the process tree under `root`, in seconds (as bench/src/procfs.rs reads it). */
function cpuSeconds(root) {
  let ticks = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // fields 14 and 15 of stat
    } catch {
      /* exited */
    }
  }
  return ticks / TICK;
}

/** Bytes the process tree under `root` had written to storage (/proc/<pid>/io `write_bytes`): SQLite's commits. */
function writtenBytes(root) {
  let bytes = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      bytes += Number(readFileSync(`/proc/${pid}/io`, "utf8").match(/write_bytes:\s+(\d+)/)[1]);
    } catch {
      /* exited */
    }
  }
  return bytes;
}

/** Resident memory of the process tree under `root`, in KiB (as bench/idle-memory.mjs reads it). */
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

/** Waits until the runtimes use less than one tick of CPU in 300 ms (at most 10 s). */
async function quiet(servers) {
  for (let deadline = Date.now() + 10_000; Date.now() < deadline; ) {
    const before = servers.map((s) => cpuSeconds(s.pid));
    await sleep(300);
    if (servers.every((s, i) => cpuSeconds(s.pid) - before[i] <= 1 / TICK)) return;
  }
}

/** A socket whose frames (one per line of a message) go to `onFrame`; `next` waits for one. */
function open(url, user, onFrame) {
  const ws = new WebSocket(url, ["roomcast.v1", `bearer.${token(user, RIGHTS, { ttlSeconds: 86_400 })}`], {
    perMessageDeflate: false,
  });
  const waiters = [];
  ws.on("message", (d) => {
    for (const line of d.toString().split("\n")) {
      const frame = JSON.parse(line);
      if (frame.type === "message") onFrame(frame);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].pred(frame)) waiters.splice(i, 1)[0].resolve(frame);
      }
    }
  });
  const conn = {
    ws,
    next: (pred, what) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${user}: no ${what} within 30 s`)), 30_000);
        waiters.push({
          pred,
          resolve: (f) => {
            clearTimeout(timer);
            resolve(f);
          },
        });
      }),
    send: (frame) => ws.send(JSON.stringify(frame)),
  };
  ws.once("error", (e) => console.error(`${user}: ${e.message}`));
  return conn;
}

/** A direct member: its own socket to its room, in once welcomed. */
async function direct(server, room, user, onFrame) {
  const conn = open(`${server.wsUrl}/rooms/bench:${room}/ws?cid=${user}`, user, onFrame);
  await conn.next((f) => f.type === "welcome", "welcome");
  return conn;
}

/** A session user: one session socket, joined to `rooms` (all joins sent at once). */
async function session(server, rooms, user, onFrame, cid = user) {
  const conn = open(`${server.wsUrl}/session/ws?cid=${cid}`, user, onFrame);
  await conn.next((f) => f.type === "session", "session frame");
  const joined = rooms.map((room) =>
    conn.next((f) => f.room === `bench:${room}` && (f.type === "joined" || f.type === "left"), `joined ${room}`),
  );
  for (const room of rooms) conn.send({ type: "join", room: `bench:${room}`, echo: false });
  for (const f of await Promise.all(joined)) {
    if (f.type !== "joined") throw new Error(`${user}: ${f.room} refused: ${JSON.stringify(f)}`);
  }
  return conn;
}

// ---------------------------------------------------------------------------------------------
// 1. Load

/** Latencies and counts per slot, keyed by the slot's tag in the data. */
const slots = new Map();
function onMessage(frame) {
  const [tag, t] = String(frame.data).split(" ");
  const slot = slots.get(tag);
  if (!slot) return;
  slot.latencies.push(performance.now() - Number(t));
  if (++slot.received === slot.expected) slot.done();
}

async function setUp(kind) {
  if (kind === "baseline") process.env.ROOMCAST_BENCH_BUILD = BASELINE;
  // (system AX is A's object from the build ROOMCAST_BENCH_BUILD names)
  const server = await (kind === "baseline" ? SYSTEMS.AX : SYSTEMS.A).start();
  const rooms = [];
  for (let r = 0; r < ROOMS; r++) {
    const members = [];
    for (let m = 0; m < MEMBERS; m++) {
      const user = `${kind[0]}${r}-${m}`;
      members.push(kind === "direct" ? await direct(server, `r${r}`, user, onMessage) : await session(server, [`r${r}`], user, onMessage));
    }
    rooms.push({ name: `bench:r${r}`, publisher: members[0], members });
  }
  return { kind, server, rooms };
}

let tags = 0;
/** Publishes at RATE deliveries/s for SLOT_MS; resolves once every delivery arrived (or 10 s after). */
async function slot(system, profile) {
  const tag = `s${tags++}`;
  const perf =
    profile && PERF_DIR
      ? spawn(
          "perf",
          ["record", "-g", "-q", "-p", String(system.server.pid), "-o", join(PERF_DIR, `${system.kind}-${profile}-${perfSlots++}.data`)],
          {
            stdio: "ignore",
          },
        )
      : null;
  if (perf) await sleep(500); // perf attached before the first send
  const perRoom = Math.floor((SLOT_MS / 1000) * PER_ROOM);
  const expected = perRoom * ROOMS * (MEMBERS - 1);
  const state = { latencies: [], received: 0, expected };
  const all = new Promise((resolve) => (state.done = resolve));
  slots.set(tag, state);
  const cpu0 = cpuSeconds(system.server.pid);
  const written0 = writtenBytes(system.server.pid);
  const start = performance.now() + 20;
  const interval = 1000 / PER_ROOM;
  // Each room's sends evenly spread, the rooms offset from one another.
  const next = system.rooms.map((_, r) => ({ k: 0, at: start + (interval * r) / ROOMS }));
  let pending = perRoom * ROOMS;
  while (pending > 0) {
    const now = performance.now();
    for (const [r, room] of system.rooms.entries()) {
      const n = next[r];
      while (n.k < perRoom && n.at <= now) {
        const data = `${tag} ${n.at.toFixed(3)} `.padEnd(PAYLOAD, "x");
        const frame = { type: "publish", id: `${tag}-${n.k}`, data };
        if (system.kind !== "direct") frame.room = room.name;
        room.publisher.send(frame);
        n.k++;
        n.at = start + interval * (n.k + r / ROOMS);
        pending--;
      }
    }
    await sleep(1);
  }
  const publishedAt = performance.now();
  await Promise.race([all, sleep(10_000)]);
  const cpu = cpuSeconds(system.server.pid) - cpu0;
  const written = writtenBytes(system.server.pid) - written0;
  slots.delete(tag);
  if (perf) {
    const exited = new Promise((r) => perf.once("exit", r));
    perf.kill("SIGINT");
    await exited;
  }
  return { expected, received: state.received, cpu, written, latencies: state.latencies, seconds: (publishedAt - start) / 1000 };
}

async function loadRound(round) {
  const order = round % 2 ? [...KINDS] : [...KINDS].reverse();
  const systems = {};
  for (const kind of order) systems[kind] = await setUp(kind);
  const servers = Object.values(systems).map((s) => s.server);
  try {
    for (const kind of order) {
      await quiet(servers);
      await slot(systems[kind]); // warm-up, not counted
    }
    const acc = Object.fromEntries(order.map((k) => [k, { expected: 0, received: 0, cpu: 0, written: 0, latencies: [] }]));
    // ABBA: A B B A A B B A … (SLOTS slots each)
    const turns = [];
    for (let i = 0; i < SLOTS; i++) turns.push(...(i % 2 ? [...order].reverse() : order));
    for (const kind of turns) {
      await quiet(servers);
      const s = await slot(systems[kind], `r${round}`);
      const a = acc[kind];
      a.expected += s.expected;
      a.received += s.received;
      a.cpu += s.cpu;
      a.written += s.written;
      a.latencies.push(...s.latencies);
    }
    const rows = [];
    for (const kind of order) {
      const a = acc[kind];
      const row = {
        round,
        kind,
        expected: a.expected,
        received: a.received,
        usPerDelivery: (a.cpu / a.received) * 1e6,
        writtenPerDelivery: a.written / a.received,
        p50: quantile(a.latencies, 0.5),
        p99: quantile(a.latencies, 0.99),
      };
      rows.push(row);
      console.log(
        `load round ${round} ${kind}: ${row.received}/${row.expected} delivered, p50 ${row.p50.toFixed(1)} ms, p99 ${row.p99.toFixed(1)} ms, CPU ${row.usPerDelivery.toFixed(1)} µs per delivery, ${row.writtenPerDelivery.toFixed(0)} B written to disk per delivery`,
      );
    }
    return rows;
  } finally {
    for (const system of Object.values(systems)) {
      for (const room of system.rooms) for (const m of room.members) m.ws.terminate();
      await system.server.stop();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Memory per connected user

/** The Worker's V8 heap (used, total) in KiB, through wrangler's inspector (no garbage collected
 * first: `used` holds garbage not yet collected; wasm memory is outside it). */
async function v8Heap(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  try {
    const answer = new Promise((resolve) =>
      ws.on("message", (d) => {
        const m = JSON.parse(d.toString());
        if (m.id === 1 && !m.method) resolve(m.result);
      }),
    );
    ws.send(JSON.stringify({ id: 1, method: "Runtime.getHeapUsage", params: {} }));
    const { usedSize, totalSize } = await answer;
    return { used: usedSize / 1024, total: totalSize / 1024 };
  } finally {
    ws.terminate();
  }
}

/** What a memory kind's users join: a session user's rooms (all of them, or one), or a direct
 * socket's room; `devices*` kinds are all devices of one user (one Session object for all). */
const MEMORY_KINDS = {
  direct: { rooms: () => 1 },
  session: { rooms: (names) => names.length },
  session1: { rooms: () => 1 },
  devices: { rooms: (names) => names.length, oneUser: true },
  devices1: { rooms: () => 1, oneUser: true },
};

async function memoryRound(round, kind) {
  const server = await SYSTEMS.A.start();
  const conns = [];
  const names = Array.from({ length: MEM_ROOMS }, (_, i) => `m${i}`);
  try {
    // Every room awake (and for sessions the session code loaded) before the users come.
    if (kind === "direct") for (const room of names) conns.push(await direct(server, room, `warm-${room}`, () => {}));
    else conns.push(await session(server, names, "warm", () => {}));
    await sleep(1000);
    const rss0 = rssKib(server.pid);
    const heap0 = V8 ? await v8Heap(server.inspectorPort) : { used: Number.NaN, total: Number.NaN };
    const { oneUser } = MEMORY_KINDS[kind];
    const joins = (k) => (MEMORY_KINDS[kind].rooms(names) === 1 ? [names[k % MEM_ROOMS]] : names);
    for (let u = 0; u < MEM_USERS; u += 10) {
      const wave = [];
      for (let k = u; k < Math.min(MEM_USERS, u + 10); k++) {
        wave.push(
          kind === "direct"
            ? direct(server, names[k % MEM_ROOMS], `user${k}`, () => {})
            : session(server, joins(k), oneUser ? "oneuser" : `user${k}`, () => {}, `user${k}`),
        );
      }
      conns.push(...(await Promise.all(wave)));
    }
    const rss1 = rssKib(server.pid);
    const heap1 = V8 ? await v8Heap(server.inspectorPort) : heap0;
    await sleep(2000);
    const rss2 = rssKib(server.pid);
    await sleep(10_000);
    const rss3 = rssKib(server.pid);
    const row = {
      round,
      kind,
      users: MEM_USERS,
      rooms: MEMORY_KINDS[kind].rooms(names),
      kib: (rss1 - rss0) / MEM_USERS,
      v8UsedKib: (heap1.used - heap0.used) / MEM_USERS,
      v8TotalKib: (heap1.total - heap0.total) / MEM_USERS,
      kib2s: (rss2 - rss0) / MEM_USERS,
      kib12s: (rss3 - rss0) / MEM_USERS,
    };
    console.log(
      `memory round ${round} ${kind} (${row.rooms} room${row.rooms > 1 ? "s" : ""} per user): ${row.kib.toFixed(1)} KiB per user${V8 ? ` (V8 heap used ${row.v8UsedKib.toFixed(1)}, total ${row.v8TotalKib.toFixed(1)})` : ""}, 2 s later ${row.kib2s.toFixed(1)}, 12 s later ${row.kib12s.toFixed(1)}`,
    );
    return row;
  } finally {
    for (const c of conns) c.ws.terminate();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------

const machine = `${cpus().length} cores (${cpus()[0].model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
console.log(
  `${machine}\nload: ${ROOMS} rooms × ${MEMBERS} members, ${RATE} deliveries/s (${PER_ROOM.toFixed(2)} publishes/s per room), ${PAYLOAD} B, ${SLOTS} slots of ${SLOT_MS / 1000} s per system per round; memory: ${MEM_USERS} users, ${MEM_ROOMS} rooms per session user; ${ROUNDS} rounds`,
);
const load = [];
const memory = [];
for (let round = 1; round <= ROUNDS; round++) {
  if (!process.argv.includes("--skip-load")) load.push(...(await loadRound(round)));
  if (!process.argv.includes("--skip-memory")) {
    for (const kind of round % 2 ? MEM_KINDS : [...MEM_KINDS].reverse()) memory.push(await memoryRound(round, kind));
  }
}

/** The median over rounds of a field, and of the per-round ratio `kind` ÷ `base`. */
function summary(rows, field, kind = "session", base = "direct") {
  const of = (k) => rows.filter((r) => r.kind === k);
  const ratios = of(kind)
    .map((s) => s[field] / of(base).find((d) => d.round === s.round)?.[field])
    .filter(Number.isFinite);
  return {
    direct: median(of("direct").map((r) => r[field])),
    session: median(of(kind).map((r) => r[field])),
    ratio: median(ratios),
    ratios,
  };
}
const out = { machine, baseline: BASELINE, rooms: ROOMS, members: MEMBERS, rate: RATE, slots: SLOTS, slotMs: SLOT_MS, load, memory };
console.log(`\nmedians of ${ROUNDS} rounds (session ÷ direct: the median of the per-round ratios, min–max):`);
const show = (label, s, unit, kind = "session") => {
  if (!s.ratios.length) return;
  console.log(
    `  ${label}: direct ${s.direct.toFixed(1)}, ${kind} ${s.session.toFixed(1)} ${unit}; ${kind} ÷ direct ${s.ratio.toFixed(2)} (${Math.min(...s.ratios).toFixed(2)}–${Math.max(...s.ratios).toFixed(2)})`,
  );
};
out.summary = {};
for (const [field, label, unit] of [
  ["p50", "p50 latency", "ms"],
  ["p99", "p99 latency", "ms"],
  ["usPerDelivery", "CPU per delivery", "µs"],
  ["writtenPerDelivery", "bytes written to disk per delivery", "B"],
]) {
  if (!load.length) break;
  out.summary[field] = summary(load, field);
  show(label, out.summary[field], unit);
  if (BASELINE) {
    out.summary[`${field}Baseline`] = summary(load, field, "baseline");
    show(label, out.summary[`${field}Baseline`], unit, "baseline");
    const s = summary(load, field, "session", "baseline");
    out.summary[`${field}SessionToBaseline`] = s;
    console.log(
      `  ${label}: session ÷ baseline ${s.ratio.toFixed(2)} (${Math.min(...s.ratios).toFixed(2)}–${Math.max(...s.ratios).toFixed(2)})`,
    );
  }
}
if (load.length) {
  for (const kind of KINDS.slice(1)) {
    const d = load.filter((r) => r.kind === kind).map((r, i) => r.p50 - load.filter((x) => x.kind === "direct")[i].p50);
    console.log(`  p50 ${kind} − direct: ${median(d).toFixed(1)} ms`);
  }
}
for (const [field, label] of [
  ["kib", "memory per user"],
  ["kib2s", "memory per user 2 s later"],
  ["kib12s", "memory per user 12 s later"],
]) {
  if (!memory.length) break;
  out.summary[field] = summary(memory, field);
  show(label, out.summary[field], "KiB");
  if (MEM_KINDS.includes("session1")) {
    out.summary[`${field}Session1`] = summary(memory, field, "session1");
    show(`${label}, a session in 1 room`, out.summary[`${field}Session1`], "KiB", "session1");
  }
}
const file = join(ROOT, "bench", "results", `${new Date().toISOString().replace(/[:.]/g, "-")}-session-path.json`);
writeFileSync(file, `${JSON.stringify(out, null, 1)}\n`);
console.log(`\n${file}`);
