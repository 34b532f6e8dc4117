// A diagnostic: the runtime's memory per idle connection, systems taking turns (a fresh server
// each, the order reversed every round), and where it goes.
//   node bench/idle-memory.mjs A,B 1x1000 3 [--snapshot] [--next] [--gc]  (systems, rooms x members, rounds)
// One line per system and round, then medians (ratios to the last system), in KiB per connection:
//   rss       the runtime's resident memory after the members joined, minus before (as the bench)
//   2 s later the same once the joins have settled
//   V8 heap   the isolate's V8 heap, after minus before: used (live objects and uncollected
//             garbage; wasm memory is outside it) and total (what V8 reserved)
//   next      with --next, as many members again join the same rooms, and this is their rss
//             growth per connection: the process already warm (code compiled to its top tier,
//             the compiler's own code paged in, the allocator's caches and V8's heap reserve grown
//             by the first batch), so the memory a connection adds and nothing that is paid once
//   after GC  with --gc, last: V8's heap total (what it keeps committed) after a full collection
//             (a heap snapshot's), minus before the joins, per connection of all batches: the
//             garbage's share of the V8 heap is gone from it (rss then also holds the snapshot)
// With --snapshot, heap snapshots (through wrangler's inspector; V8 collects garbage first) before
// and after: the live V8 objects per connection and what grew most, by node type and name. The
// snapshot's own memory then stays in the runtime's RSS, so read rss from a run without it.
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { descendants } from "./runtime.mjs";
import { SYSTEMS } from "./systems.mjs";

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const snapshot = process.argv.includes("--snapshot");
const next = process.argv.includes("--next");
const gc = process.argv.includes("--gc");
const [ids = "A,B", shape = "1x1000", roundsArg = "3"] = args;
const [rooms, members] = shape.split("x").map(Number);
const rounds = Number(roundsArg);
const idle = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resident memory of the process tree under `root`, in KiB (as bench/src/procfs.rs reads it). */
function rssKib(root) {
  let total = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const line = readFileSync(`/proc/${pid}/status`, "utf8")
        .split("\n")
        .find((l) => l.startsWith("VmRSS:"));
      total += Number(line.split(/\s+/)[1]);
    } catch {
      /* exited */
    }
  }
  return total;
}

/** A DevTools protocol session with the Worker's isolate, through wrangler's inspector proxy. */
async function inspector(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let next = 1;
  const pending = new Map();
  const chunks = [];
  ws.on("message", (d) => {
    const m = JSON.parse(d.toString());
    if (m.method === "HeapProfiler.addHeapSnapshotChunk") chunks.push(m.params.chunk);
    // wrangler's proxy echoes some requests back (with their method): only answers count.
    if (m.id && !m.method && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    }
  });
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
      ws.send(JSON.stringify({ id, method, params }));
    });
  /** A heap snapshot (V8 collects all garbage first; workerd does not answer `collectGarbage`).
   * The snapshot's request gets no answer through the proxy either: the call after it is the
   * barrier, its answer comes after the last chunk. */
  const snapshot = async () => {
    chunks.length = 0;
    ws.send(JSON.stringify({ id: next++, method: "HeapProfiler.takeHeapSnapshot", params: { reportProgress: false } }));
    const usage = await call("Runtime.getHeapUsage");
    return { usage, text: chunks.join("") };
  };
  await call("HeapProfiler.enable");
  return {
    /** Collects garbage; the V8 heap used afterwards, in KiB. */
    /** The V8 heap now, in KiB: used (live objects and garbage not yet collected) and total
     * (what the heap has reserved for itself, young generation included). */
    async heap() {
      const { usedSize, totalSize } = await call("Runtime.getHeapUsage");
      return { used: usedSize / 1024, total: totalSize / 1024 };
    },
    /** Collects garbage; self size and count per node type and name, from the heap snapshot. */
    async byConstructor() {
      const snap = JSON.parse((await snapshot()).text);
      const f = snap.snapshot.meta.node_fields;
      const types = snap.snapshot.meta.node_types[0];
      const [iType, iName, iSize] = ["type", "name", "self_size"].map((k) => f.indexOf(k));
      const out = new Map();
      for (let i = 0; i < snap.nodes.length; i += f.length) {
        const key = `${types[snap.nodes[i + iType]]}:${snap.strings[snap.nodes[i + iName]]}`.slice(0, 80);
        const e = out.get(key) ?? { count: 0, size: 0 };
        e.count++;
        e.size += snap.nodes[i + iSize];
        out.set(key, e);
      }
      return out;
    },
    close: () => ws.close(),
  };
}

async function join(system, server, room, member) {
  const url = system.url(server).replace("{room}", `r${room}`).replace("{cid}", `m${member}`);
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error(`${system.label}: member ${member} of room ${room} not in within 30 s`)), 30_000).unref();
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

async function measure(id) {
  const system = SYSTEMS[id];
  const server = await system.start();
  const sockets = [];
  try {
    const session = await inspector(server.inspectorPort);
    // The first member of each room wakes it and loads the code paths (the bench's cold-start
    // echo does the same for one room), so what follows is the cost of a connection alone.
    for (let r = 0; r < rooms; r++) sockets.push(await join(system, server, r, "warm"));
    await idle(1000);
    const heap0 = await session.heap();
    const rss0 = rssKib(server.pid);
    const before = snapshot ? await session.byConstructor() : null;
    const n = rooms * members;
    const batch = async (prefix) => {
      for (let r = 0; r < rooms; r++) {
        for (let m = 0; m < members; m += 50) {
          const wave = [];
          for (let k = m; k < Math.min(members, m + 50); k++) wave.push(join(system, server, r, `${prefix}${k}`));
          sockets.push(...(await Promise.all(wave)));
        }
      }
    };
    await batch("");
    const rss1 = rssKib(server.pid);
    await idle(2000);
    const rss2 = rssKib(server.pid);
    const heap1 = await session.heap();
    const row = {
      id,
      rss: (rss1 - rss0) / n,
      settled: (rss2 - rss0) / n,
      heap: (heap1.used - heap0.used) / n,
      heapTotal: (heap1.total - heap0.total) / n,
    };
    if (snapshot) {
      const after = await session.byConstructor();
      row.grew = [...after]
        .map(([k, v]) => ({ k, count: v.count - (before.get(k)?.count ?? 0), kib: (v.size - (before.get(k)?.size ?? 0)) / 1024 }))
        .sort((a, b) => b.kib - a.kib)
        .slice(0, 15);
      const total = (snap) => [...snap.values()].reduce((sum, v) => sum + v.size, 0) / 1024;
      row.live = (total(after) - total(before)) / n;
    }
    if (next) {
      // After the snapshot's own memory, if any: measured from here.
      const [rssAfter, heapAfter] = [rssKib(server.pid), await session.heap()];
      await batch("n");
      await idle(2000);
      row.next = (rssKib(server.pid) - rssAfter) / n;
      const heap2 = await session.heap();
      row.nextHeap = (heap2.used - heapAfter.used) / n;
      row.nextHeapTotal = (heap2.total - heapAfter.total) / n;
    }
    if (gc) {
      await session.byConstructor();
      row.gcHeapTotal = ((await session.heap()).total - heap0.total) / (next ? 2 * n : n);
    }
    session.close();
    return row;
  } finally {
    for (const ws of sockets) ws.terminate();
    await server.stop();
  }
}

const systems = ids.split(",");
const rows = [];
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 ? systems : [...systems].reverse();
  for (const id of order) {
    const row = await measure(id);
    rows.push(row);
    const live = row.live === undefined ? "" : `, live V8 objects ${row.live.toFixed(2)}`;
    const more =
      row.next === undefined
        ? ""
        : `, next ${row.next.toFixed(1)} (V8 heap used ${row.nextHeap.toFixed(2)}, total ${row.nextHeapTotal.toFixed(2)})`;
    const collected = row.gcHeapTotal === undefined ? "" : `, V8 heap total after GC ${row.gcHeapTotal.toFixed(2)}`;
    console.log(
      `round ${round} ${id}: rss ${row.rss.toFixed(1)}, 2 s later ${row.settled.toFixed(1)}, V8 heap used ${row.heap.toFixed(2)}, total ${row.heapTotal.toFixed(2)}${live}${more}${collected} KiB per connection`,
    );
    for (const g of row.grew ?? []) console.log(`    ${g.kib.toFixed(1).padStart(9)} KiB ${String(g.count).padStart(7)} × ${g.k}`);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`\n${shape}, ${rounds} rounds, medians in KiB per connection:`);
for (const id of systems) {
  const mine = rows.filter((r) => r.id === id);
  const ratio = (k) =>
    id !== systems.at(-1)
      ? ` (÷ ${systems.at(-1)} ${(median(mine.map((r) => r[k])) / median(rows.filter((r) => r.id === systems.at(-1)).map((r) => r[k]))).toFixed(2)})`
      : "";
  console.log(
    `  ${id}: rss ${median(mine.map((r) => r.rss)).toFixed(1)}${ratio("rss")}, 2 s later ${median(mine.map((r) => r.settled)).toFixed(1)}${ratio("settled")}, V8 heap used ${median(mine.map((r) => r.heap)).toFixed(2)}, total ${median(mine.map((r) => r.heapTotal)).toFixed(2)}${next ? `, next ${median(mine.map((r) => r.next)).toFixed(1)}${ratio("next")}` : ""}`,
  );
}
