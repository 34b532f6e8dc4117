// Stalls: SDK clients reach the runtime through a faulty TCP proxy that black-holes, resets,
// delays or throttles their connections. Each client must notice a dead connection within its
// heartbeat bounds (ping interval + pong timeout) and come back; a merely slow connection must
// stay up; and a slow consumer must not slow the room for everyone else.
import { createServer, connect as tcpConnect } from "node:net";
import { ALL_RIGHTS, api, roomName, sleep, startEdge, tempDir, token, until } from "../harness.mjs";

/**
 * A TCP proxy whose behaviour can be switched for every open connection: "pass", "blackhole"
 * (bytes vanish both ways, the connection stays up), "delay" (each chunk waits, both ways),
 * "throttle" (the client receives at most bytesPerSec: a slow reader), or "reset" (destroyed).
 */
export function faultyProxy(targetPort) {
  const pairs = new Set();
  const forward = (from, to, pair, downstream) => {
    const queue = [];
    let flushing = false;
    let budget = 0;
    let last = Date.now();
    const flush = async () => {
      if (flushing) return;
      flushing = true;
      while (queue.length) {
        const [chunk, arrived] = queue.shift();
        // latency, not a queue: each chunk leaves delayMs after it arrived
        if (pair.mode === "delay") await sleep(Math.max(0, arrived + pair.delayMs - Date.now()));
        if (pair.mode === "throttle" && downstream) {
          for (let off = 0; off < chunk.length; ) {
            const now = Date.now();
            budget = Math.min(pair.bytesPerSec, budget + ((now - last) / 1000) * pair.bytesPerSec);
            last = now;
            const n = Math.min(chunk.length - off, Math.floor(budget));
            if (n <= 0) {
              await sleep(20);
              continue;
            }
            if (!to.destroyed) to.write(chunk.subarray(off, off + n));
            budget -= n;
            off += n;
          }
        } else if (pair.mode !== "blackhole" && !to.destroyed) {
          to.write(chunk);
        }
      }
      flushing = false;
    };
    from.on("data", (d) => {
      if (pair.mode === "blackhole") return;
      queue.push([d, Date.now()]);
      flush();
    });
    from.on("error", () => to.destroy());
    from.on("close", () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = tcpConnect(targetPort, "127.0.0.1");
    const pair = { client, upstream, mode: "pass", delayMs: 0, bytesPerSec: Infinity };
    forward(client, upstream, pair, false);
    forward(upstream, client, pair, true);
    pairs.add(pair);
    client.on("close", () => pairs.delete(pair));
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: server.address().port,
        /** Applies a fault to every connection open now (new connections pass). */
        fault(mode, { delayMs = 0, bytesPerSec = Infinity } = {}) {
          for (const p of pairs) {
            if (mode === "reset") {
              p.client.destroy();
              p.upstream.destroy();
              continue;
            }
            Object.assign(p, { mode, delayMs, bytesPerSec });
          }
        },
        close() {
          for (const p of pairs) {
            p.client.destroy();
            p.upstream.destroy();
          }
          return new Promise((r) => server.close(r));
        },
      }),
    ),
  );
}

export async function stalls({ clients = 20, pingIntervalMs = 1000, pongTimeoutMs = 1000, log = () => {} } = {}) {
  const { connect } = await import("../../sdk/dist/index.js");
  const edge = await startEdge({ persistDir: tempDir("stalls"), vars: { UPGRADE_LIMITER: "" } });
  const proxy = await faultyProxy(edge.port);
  const room = roomName("stalls");
  const tuning = { pingIntervalMs, pongTimeoutMs, minReconnectDelayMs: 100, maxReconnectDelayMs: 1000, connectTimeoutMs: 3000 };
  const members = [];
  for (let i = 0; i < clients; i++) {
    const r = connect({
      url: `ws://127.0.0.1:${proxy.port}`,
      room,
      clientId: `x${i}`,
      ...tuning,
      token: token(`u${i}`, { [room]: ALL_RIGHTS }),
    });
    const m = { r, events: [], seqs: [] };
    r.on("status", (s) => m.events.push({ at: Date.now(), state: s.state, code: s.code }));
    r.on("message", (msg) => m.seqs.push(msg.seq));
    members.push(m);
  }
  await until(() => members.every((m) => m.r.state === "open"), { timeoutMs: 30_000, intervalMs: 20, what: "clients open" });
  const results = {};
  const bound = pingIntervalMs + pongTimeoutMs;
  for (const [mode, opts] of [
    ["blackhole", {}],
    ["reset", {}],
  ]) {
    const mark = Date.now();
    for (const m of members) m.events = [];
    proxy.fault(mode, opts);
    await until(() => members.every((m) => m.events.some((e) => e.state === "open")), {
      timeoutMs: 30_000,
      intervalMs: 20,
      what: `recovery from ${mode}`,
    });
    const detect = members.map((m) => m.events.find((e) => e.state === "reconnecting").at - mark);
    const recover = members.map((m) => m.events.find((e) => e.state === "open").at - mark);
    results[mode] = { maxDetectMs: Math.max(...detect), maxRecoverMs: Math.max(...recover), boundMs: bound };
    log(`${mode}: every client noticed within ${results[mode].maxDetectMs} ms and was back within ${results[mode].maxRecoverMs} ms`);
  }
  // Delay well under the pong timeout, and a throttle that still passes pongs: no false alarms.
  for (const [mode, opts] of [
    ["delay", { delayMs: Math.floor(pongTimeoutMs / 4) }],
    ["throttle", { bytesPerSec: 20_000 }],
  ]) {
    for (const m of members) m.events = [];
    proxy.fault(mode, opts);
    const before = members.map((m) => m.seqs.length);
    const res = await api(
      edge,
      "POST",
      `/rooms/${room}/messages`,
      Array.from({ length: 20 }, (_, i) => ({ data: { n: i } })),
    );
    if (res.status !== 200) throw new Error(`publish failed: ${res.text}`);
    await until(() => members.every((m, i) => m.seqs.length >= before[i] + 20), {
      timeoutMs: 30_000,
      intervalMs: 20,
      what: `messages through ${mode}`,
    });
    await sleep(bound * 2);
    results[mode] = { falseAlarms: members.filter((m) => m.events.some((e) => e.state === "reconnecting")).length };
    log(`${mode}: ${results[mode].falseAlarms} false alarms, all messages delivered`);
    proxy.fault("pass");
  }
  for (const m of members) m.r.close();

  // A slow consumer: one client reads at 4 KB/s while 300 messages of 1 KB go out; the others,
  // connected directly, must get them as fast as when it is absent.
  const burst = async (withSlow) => {
    const name = roomName("slow");
    const fast = Array.from({ length: 5 }, (_, i) => {
      const r = connect({ url: edge.url, room: name, clientId: `f${i}`, token: token(`f${i}`, { [name]: ALL_RIGHTS }) });
      const m = { r, count: 0 };
      r.on("message", () => m.count++);
      return m;
    });
    let slow;
    let slowCount = 0;
    if (withSlow) {
      slow = connect({
        url: `ws://127.0.0.1:${proxy.port}`,
        room: name,
        clientId: "slow",
        ...tuning,
        pongTimeoutMs: 60_000,
        token: token("slow", { [name]: ALL_RIGHTS }),
      });
      slow.on("message", () => slowCount++);
      await until(() => slow.state === "open", { timeoutMs: 10_000, intervalMs: 20, what: "slow client open" });
      proxy.fault("throttle", { bytesPerSec: 4096 });
    }
    await until(() => fast.every((m) => m.r.state === "open"), { timeoutMs: 10_000, intervalMs: 20, what: "fast clients open" });
    const started = Date.now();
    const payload = "x".repeat(1000);
    for (let b = 0; b < 3; b++) {
      await api(
        edge,
        "POST",
        `/rooms/${name}/messages`,
        Array.from({ length: 100 }, (_, i) => ({ data: { i, payload } })),
      );
    }
    await until(() => fast.every((m) => m.count === 300), { timeoutMs: 60_000, intervalMs: 20, what: "fast clients to get the burst" });
    const ms = Date.now() - started;
    const slowHad = slowCount;
    for (const m of fast) m.r.close();
    slow?.close();
    return { ms, slowHad };
  };
  const alone = await burst(false);
  const withSlow = await burst(true);
  results.slowConsumer = {
    fastClientsMsAlone: alone.ms,
    fastClientsMsWithSlowConsumer: withSlow.ms,
    slowConsumerHadWhenFastDone: withSlow.slowHad,
  };
  log(
    `slow consumer: the fast clients got a 300 KB burst in ${alone.ms} ms alone, ${withSlow.ms} ms beside a 4 KB/s reader (which had ${withSlow.slowHad} of 300 by then)`,
  );
  await proxy.close();
  await edge.stop();
  return results;
}
