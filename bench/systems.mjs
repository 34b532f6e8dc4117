// The systems `npm run bench` compares, each started the same way every round: a fresh
// process tree (wrangler dev + workerd, or node), measured from its root pid.
import { spawn } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, ROOT, startEdge, tempDir, token } from "../tests/harness.mjs";
import { workerRuntime } from "./runtime.mjs";

const SERVERS = join(ROOT, "bench", "servers");

// roomcast's limits are for production; the benchmark offers loads far above one member's share
// and keeps members silent for minutes, so the per-connection rate limits, the heartbeat sweep
// and the per-IP upgrade limit are lifted. Everything else (storage, seq, idempotency) is as
// deployed.
const ROOMCAST_VARS = {
  UPGRADE_LIMITER: "",
  // The load generator's members do not echo read marks (at the benchmark's rates a mark goes
  // out every minute or more per room; docs/PROTOCOL.md, *Read marks*).
  UNREAD_MAX_BYTES: 0,
  RATE_MESSAGES_PER_SEC: 1_000_000,
  RATE_MESSAGES_BURST: 1_000_000,
  RATE_BYTES_PER_SEC: 1_000_000_000,
  HEARTBEAT_TIMEOUT_MS: 3_600_000,
  MAX_CONNECTIONS: 10_000,
  // Every member holds the same token (one user), so the per-user connection cap is lifted too,
  // and the bound on the new rooms one user creates (100 rooms in the widest scenario).
  MAX_CONNECTIONS_PER_USER: 10_000,
  ROOM_CREATION_LIMITER: "",
  // The ephemeral path's own per-connection rate and frame limit (AE), lifted the same way.
  BROADCAST_RATE_PER_SEC: 1_000_000,
  BROADCAST_MAX_BYTES: 65_536,
};

/** One token for every member: publish and subscribe in the bench rooms, no presence right
 * (presence is not what is measured, and 5,000 joins would announce 12.5 M presence frames). */
const roomcastUrl = (s) => {
  const bearer = token("bench", { "bench:*": ["subscribe", "publish"] }, { ttlSeconds: 86_400 });
  return `${s.wsUrl}/rooms/bench:{room}/ws?cid={cid}&token=${bearer}`;
};

/**
 * roomcast's wrangler.toml without `[assets]` and `[build]` (bench.sh builds first). The demo's
 * static assets put the local runtime's asset router in front of every request, and with it two
 * more WebSocket pipe hops on every frame a socket sends: measured at 1 × 1,000 and 5,000
 * deliveries/s, B behind the same router cost 43.3 µs per delivery against 32.3 µs without, and A
 * 43.0 µs. That is the runtime's routing, not the Room object, and B has no assets.
 */
function roomcastConfig(build) {
  const sections = readFileSync(join(ROOT, "wrangler.toml"), "utf8").split(/^(?=\[)/m);
  const kept = sections.filter((s) => !/^\[(assets|build)\]/.test(s)).join("");
  const dir = tempDir("bench-config");
  writeFileSync(
    join(dir, "wrangler.toml"),
    kept.replace(/^main = "(.*)"$/m, (_, main) => `main = ${JSON.stringify(build ?? join(ROOT, main))}`),
  );
  // wrangler dev reads the secrets (the token key) from the .dev.vars beside the config.
  copyFileSync(join(ROOT, ".dev.vars"), join(dir, ".dev.vars"));
  return join(dir, "wrangler.toml");
}

/** Starts a node server script that prints "listening <port>". */
async function startNode(script) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(SERVERS, script), String(port)], {
    cwd: join(ROOT, "bench"),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      log += d;
      if (log.includes("listening")) resolve();
    });
    child.stderr.on("data", (d) => (log += d));
    exited.then((e) => reject(new Error(`${script} exited (${JSON.stringify(e)}):\n${log}`)));
  });
  return {
    port,
    pid: child.pid,
    wsUrl: `ws://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        /* gone */
      }
      await exited;
    },
  };
}

/** `GET /` reached a Worker: B, S, R and C answer 200, roomcast without its demo a JSON 404. */
async function isWorker(response) {
  return response.status === 200 || (response.status === 404 && (await response.text()).includes("docs/PROTOCOL.md"));
}

/**
 * Starts wrangler dev and points the benchmark at the runtime that runs the Worker (see
 * runtime.mjs): `pid` and `wsUrl` are the runtime's, `stop` stops the whole tree.
 */
const wrangler =
  (config, vars = {}) =>
  async () => {
    const file = typeof config === "function" ? config() : join(SERVERS, config, "wrangler.toml");
    const edge = await startEdge({ config: file, vars, logLevel: "warn", ready: isWorker });
    try {
      const runtime = await workerRuntime(edge.pid, isWorker);
      return { ...runtime, wsUrl: `ws://127.0.0.1:${runtime.port}`, inspectorPort: edge.inspectorPort, stop: () => edge.stop() };
    } catch (e) {
      await edge.stop();
      throw e;
    }
  };

export const SYSTEMS = {
  A: {
    label: "roomcast (Rust/Wasm DO)",
    protocol: "roomcast",
    start: wrangler(roomcastConfig, ROOMCAST_VARS),
    url: roomcastUrl,
  },
  AE: {
    label: "roomcast, ephemeral broadcasts",
    protocol: "roomcast_broadcast",
    start: wrangler(roomcastConfig, ROOMCAST_VARS),
    url: roomcastUrl,
  },
  // Another build of the Worker (ROOMCAST_BENCH_BUILD: the path of its index.js), broadcasting
  // like AE: for measuring a change against the current build in the same run (`--systems AE,AX,B`).
  AX: {
    label: "roomcast, ephemeral broadcasts, from ROOMCAST_BENCH_BUILD",
    protocol: "roomcast_broadcast",
    start: wrangler(() => roomcastConfig(process.env.ROOMCAST_BENCH_BUILD), ROOMCAST_VARS),
    url: roomcastUrl,
    control: true,
  },
  B: {
    label: "minimal JS DO (in-runtime limit)",
    protocol: "relay",
    start: wrangler("js-do"),
    url: (s) => `${s.wsUrl}/rooms/{room}/ws`,
  },
  // B's object declared without SQLite (key-value storage, never touched): for
  // bench/object-floor.mjs, not part of the default comparison.
  BK: {
    label: "minimal JS DO without SQLite",
    protocol: "relay",
    start: wrangler(() => join(SERVERS, "js-do", "kv.toml")),
    url: (s) => `${s.wsUrl}/rooms/{room}/ws`,
    control: true,
  },
  S: {
    label: "minimal JS DO + SQLite insert per message",
    protocol: "relay",
    start: wrangler("js-do", { DURABLE: "1" }),
    url: (s) => `${s.wsUrl}/rooms/{room}/ws`,
  },
  R: {
    label: "minimal JS DO relaying roomcast-sized frames",
    protocol: "relay",
    start: wrangler("js-do", { ENVELOPE: "1" }),
    url: (s) => `${s.wsUrl}/rooms/{room}/ws`,
    // A control for focused runs (`--systems A,B,R`), not part of the default comparison.
    control: true,
  },
  RB: {
    label: "minimal JS DO relaying roomcast-sized broadcast frames",
    protocol: "relay",
    start: wrangler("js-do", { ENVELOPE: "broadcast" }),
    url: (s) => `${s.wsUrl}/rooms/{room}/ws`,
    // AE's control for focused runs (`--systems AE,B,RB`): B with AE's frame bytes.
    control: true,
  },
  C: {
    label: "PartyServer (hibernate)",
    protocol: "relay",
    start: wrangler("partyserver"),
    url: (s) => `${s.wsUrl}/parties/relay/{room}`,
  },
  D: {
    label: "Socket.IO 4 (Node)",
    protocol: "socket_io",
    start: () => startNode("socketio.mjs"),
    url: (s) => `${s.wsUrl}/socket.io/?EIO=4&transport=websocket`,
  },
  E: {
    label: "ws (Node)",
    protocol: "relay",
    start: () => startNode("ws.mjs"),
    url: (s) => `${s.wsUrl}/{room}`,
  },
};
