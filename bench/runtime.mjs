// wrangler dev runs two workerd processes: its dev proxy on the port we asked for, and the
// runtime that runs the Worker on a port of its own. The proxy does not exist in production, and
// here it costs more CPU than the Worker itself, so the benchmark talks to the runtime's socket
// directly and measures the runtime's process. Linux only: it reads /proc.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

function children(pid) {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      /* exited */
    }
  }
  return out;
}

export function descendants(pid) {
  const all = [];
  for (let queue = [pid]; queue.length; ) {
    const next = children(queue.shift());
    all.push(...next);
    queue.push(...next);
  }
  return all;
}

/** TCP ports `pid` listens on (IPv4), from its socket inodes and /proc/net/tcp. */
function listeningPorts(pid) {
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = readlinkSync(`/proc/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  const ports = [];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // f[1] local address (hex ip:port), f[3] state (0A = LISTEN), f[9] inode
    if (f[3] === "0A" && inodes.has(f[9])) ports.push(parseInt(f[1].split(":")[1], 16));
  }
  return ports;
}

/**
 * The workerd process that runs the Worker under wrangler dev rooted at `rootPid`, and the port
 * on which it serves the Worker (the one whose answer to `GET /` satisfies `ready`).
 */
export async function workerRuntime(rootPid, ready = async (r) => r.status === 200) {
  for (const pid of descendants(rootPid)) {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (!cmdline[0].endsWith("workerd") || !cmdline.includes("--socket-addr=entry=127.0.0.1:0")) continue;
    for (const port of listeningPorts(pid)) {
      if (await fetch(`http://127.0.0.1:${port}/`).then(ready, () => false)) return { pid, port };
    }
  }
  throw new Error(`no workerd runtime with a Worker port under pid ${rootPid}`);
}
