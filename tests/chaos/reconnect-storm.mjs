// Reconnect storm: many SDK clients are cut off at once by a runtime restart. Measures how their
// reconnects spread over time (peak per 100 ms, time to 95 % and to 100 %), with the SDK's full
// jitter and, for comparison, without it (every client waits exactly its backoff cap).
import { ALL_RIGHTS, roomName, sleep, startEdge, tempDir, token, until } from "../harness.mjs";

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
  const attempts = []; // when each scheduled reconnect attempt fires (ms since the epoch)
  for (let i = 0; i < clients; i++) {
    const room = names[i % rooms];
    const r = connect({
      url: edge.url,
      room,
      clientId: `s${i}`,
      seed: seed * 100_000 + i,
      ...backoff,
      token: token(`u${i}`, { [room]: ALL_RIGHTS }),
    });
    const m = { r, reopenedAt: null, cutAt: null, armed: false };
    // Only what happens after the kill counts (an early client may have retried while joining).
    r.on("status", (s) => {
      if (!m.armed) return;
      if (s.state === "reconnecting") attempts.push(Date.now() + s.delayMs);
      if (s.state === "reconnecting" && m.cutAt === null) m.cutAt = Date.now();
      if (s.state === "open" && m.cutAt !== null && m.reopenedAt === null) m.reopenedAt = Date.now();
    });
    members.push(m);
    if (i % 100 === 99) await sleep(50);
  }
  await until(() => members.every((m) => m.r.state === "open"), { timeoutMs: 120_000, intervalMs: 20, what: "all clients open" });

  for (const m of members) m.armed = true;
  const killedAt = Date.now();
  await edge.stop("SIGKILL");
  edge = await startEdge({ persistDir, vars, port });
  const upAt = Date.now();
  await until(() => members.every((m) => m.reopenedAt !== null), { timeoutMs: 120_000, intervalMs: 20, what: "every client back" });
  // Two views, both from the kill: when clients try (what jitter controls: the load a restarted
  // server meets) and when they are back (which also includes the server's own queueing).
  const perWindow = (times) => {
    const buckets = new Map();
    for (const t of times) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) ?? 0) + 1);
    return buckets;
  };
  const tries = perWindow(attempts.map((t) => t - killedAt));
  const back = members.map((m) => m.reopenedAt - killedAt).sort((a, b) => a - b);
  const result = {
    clients,
    jitter,
    runtimeDownMs: upAt - killedAt,
    attempts: attempts.length,
    peakAttemptsPer100ms: Math.max(...tries.values()),
    peakReconnectsPer100ms: Math.max(...perWindow(back).values()),
    msTo95: back[Math.floor(back.length * 0.95) - 1],
    msTo100: back.at(-1),
  };
  for (const m of members) m.r.close();
  await edge.stop();
  return result;
}
