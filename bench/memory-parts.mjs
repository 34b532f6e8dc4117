// A diagnostic: what the runtime's resident memory grows by while members join one room, batch
// after batch, in KiB per connection, for one system:
//   node bench/memory-parts.mjs A 1000 2        (system, members per batch, batches)
//   rss        the runtime process's resident memory
//   malloc     what tcmalloc (linked into workerd) has handed out and not taken back, read with
//              gdb from its own statistics (MallocExtension_Internal_GetStatsInPbtxt; needs
//              ptrace rights, e.g. root); and its caches of freed memory (thread, transfer,
//              central free lists and the page heap's), which stay resident
//   code       workerd's own machine code paged in (its text mapping, from /proc/PID/pagemap),
//              and the components the new pages belong to (by symbol): paid once per process
import { execFileSync } from "node:child_process";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import WebSocket from "ws";
import { SYSTEMS } from "./systems.mjs";

const [id = "A", membersArg = "1000", batchesArg = "2"] = process.argv.slice(2);
const members = Number(membersArg);
const idle = (ms) => new Promise((r) => setTimeout(r, ms));

function tcmalloc(pid) {
  const out = execFileSync(
    "gdb",
    [
      "-p",
      String(pid),
      "-batch",
      "-nx",
      "-ex",
      "set $b = (char*)malloc(1048576)",
      "-ex",
      "set $n = (int)MallocExtension_Internal_GetStatsInPbtxt($b, 1048576)",
      "-ex",
      'printf "%s\\n", $b',
      "-ex",
      "call (void)free($b)",
    ],
    { encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "ignore"] },
  );
  const get = (k) => Number(new RegExp(`(?:^|\\s)${k}: (\\d+)`).exec(out)?.[1] ?? Number.NaN) / 1024;
  const caches = ["page_heap_freelist", "central_cache_freelist", "transfer_cache_freelist", "thread_cache_freelists"];
  return { used: get("in_use_by_app"), cached: caches.reduce((s, k) => s + get(k), 0), metadata: get("malloc_metadata") };
}

function codePages(pid) {
  const line = readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .find((l) => l.includes(" r-xp ") && l.endsWith("/workerd"));
  const [range, , offset, , , path] = line.split(/\s+/);
  const [lo, hi] = range.split("-").map((h) => BigInt(`0x${h}`));
  const pages = Number((hi - lo) / 4096n);
  const buf = Buffer.alloc(pages * 8);
  const fd = openSync(`/proc/${pid}/pagemap`, "r");
  readSync(fd, buf, 0, buf.length, Number((lo / 4096n) * 8n));
  closeSync(fd);
  const present = new Set();
  for (let i = 0; i < pages; i++) if (buf.readBigUInt64LE(i * 8) >> 63n) present.add(i);
  return { present, offset: Number.parseInt(offset, 16), path };
}

/** The components (symbol prefixes) the given text pages belong to, most pages first. */
function components(text, pages) {
  const load = readFileSync(text.path).readUInt16LE(0) === 0x457f; // ELF
  if (!load) return [];
  const segment = execFileSync("readelf", ["-lW", text.path], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[0] === "LOAD" && f[7] === "E");
  const toAddress = Number.parseInt(segment[2], 16) - Number.parseInt(segment[1], 16);
  const symbols = execFileSync("nm", ["-C", "--defined-only", "-n", text.path], { encoding: "utf8", maxBuffer: 1 << 30 })
    .split("\n")
    .map((l) => /^([0-9a-f]+) [tTwW] (.*)$/.exec(l))
    .filter(Boolean)
    .map((m) => [Number.parseInt(m[1], 16), m[2]]);
  const count = new Map();
  let j = 0;
  for (const a of pages.map((p) => text.offset + p * 4096 + toAddress).sort((x, y) => x - y)) {
    while (j + 1 < symbols.length && symbols[j + 1][0] <= a) j++;
    const name = symbols[j][1].replace(/^(void|bool|auto) /, "").replace(/[(<].*$/, "");
    const key = name.split("::").slice(0, 3).join("::");
    count.set(key, (count.get(key) ?? 0) + 1);
  }
  return [...count].sort((a, b) => b[1] - a[1]);
}

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
  let before = { rss: rss(server.pid), malloc: tcmalloc(server.pid), text: codePages(server.pid) };
  for (let b = 1; b <= Number(batchesArg); b++) {
    for (let m = 0; m < members; m += 50) {
      const wave = [];
      for (let k = m; k < Math.min(members, m + 50); k++) wave.push(join(system, server, `${b}-${k}`));
      sockets.push(...(await Promise.all(wave)));
    }
    await idle(2000);
    const after = { rss: rss(server.pid), malloc: tcmalloc(server.pid), text: codePages(server.pid) };
    const fresh = [...after.text.present].filter((p) => !before.text.present.has(p));
    const per = (x) => (x / members).toFixed(1);
    console.log(
      `${id} batch ${b}: rss ${per(after.rss - before.rss)}, malloc in use ${per(after.malloc.used - before.malloc.used)}, `
        + `malloc caches ${per(after.malloc.cached - before.malloc.cached)}, metadata ${per(after.malloc.metadata - before.malloc.metadata)}, `
        + `code ${per(fresh.length * 4)} KiB per connection`,
    );
    const top = components(after.text, fresh).slice(0, 4);
    if (top.length) console.log(`    code pages: ${top.map(([k, c]) => `${k} ${c}`).join(", ")}`);
    before = after;
  }
} finally {
  for (const ws of sockets) ws.terminate();
  await server.stop();
}
