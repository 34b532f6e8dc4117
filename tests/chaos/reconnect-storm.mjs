// Reconnect storm: many SDK clients are cut off at once by a runtime restart. Measures how their
// reconnects spread over time (peak per 100 ms, time to 95 % and to 100 %), with the SDK's full
// jitter and, for comparison, without it (every client waits exactly its backoff cap).
import { ALL_RIGHTS, roomName, startEdge, tempDir, token } from "../harness.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export async function reconnectStorm({ clients = 1000, rooms = 10, jitter = true, seed = 1 } = {}) {
  const { connect } = await import("../../sdk/dist/index.js");
  const persistDir = tempDir("storm");
  // Thousands of clients from one address: the per-IP upgrade limit is off for this test.
  const vars = { UPGRADE_LIMITER: "", MAX_CONNECTIONS: 32_000 };
  let edge = await startEdge({ persistDir, vars });
  const port = edge.port;
  const names = Array.from({ length: rooms }, (_, i) => roomName(`storm${i}`));
  const backoff = { minReconnectDelayMs: 500, maxReconnectDelayMs: 5_000, reconnectFactor: 2, jitter, connectTimeoutMs: 5_000 };
  const members = [];
  for (let i = 0; i < clients; i++) {
    const room = names[i % rooms];
    const r = connect({ url: edge.url, room, clientId: `s${i}`, seed: seed * 100_000 + i, ...backoff,
      token: token(`u${i}`, { [room]: ALL_RIGHTS }) });
    const m = { r, reopenedAt: null, cutAt: null };
    r.on("status", (s) => {
      if (s.state === "reconnecting" && m.cutAt === null) m.cutAt = Date.now();
      if (s.state === "open" && m.cutAt !== null && m.reopenedAt === null) m.reopenedAt = Date.now();
    });
    members.push(m);
    if (i % 100 === 99) await sleep(50);
  }
  await waitFor(() => members.every((m) => m.r.state === "open"), 120_000, "all clients open");

  const killedAt = Date.now();
  await edge.stop("SIGKILL");
  edge = await startEdge({ persistDir, vars, port });
  const upAt = Date.now();
  await waitFor(() => members.every((m) => m.reopenedAt !== null), 120_000, "every client back");
  // Measured from the first reconnect: attempts that reach wrangler dev while its runtime starts
  // are held and complete together, a little before its readiness check answers.
  const first = Math.min(...members.map((m) => m.reopenedAt));
  const times = members.map((m) => m.reopenedAt - first).sort((a, b) => a - b);
  const buckets = new Map();
  for (const t of times) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) ?? 0) + 1);
  const result = {
    clients, jitter,
    runtimeDownMs: upAt - killedAt,
    firstReconnectAfterKillMs: first - killedAt,
    peakPer100ms: Math.max(...buckets.values()),
    msTo95: times[Math.floor(times.length * 0.95) - 1],
    msTo100: times.at(-1),
    busiest100msWindows: [...buckets].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([w, n]) => `${w * 100}-${w * 100 + 100} ms: ${n}`),
  };
  for (const m of members) m.r.close();
  await edge.stop();
  return result;
}
