// Restart storm: many SDK clients (the built package, in Node) in a few rooms; SDK and HTTP
// publishers send numbered messages; the local runtime is killed with SIGKILL and restarted at
// random intervals. Afterwards the invariants are checked from the recorded event log and the
// rooms' stored history, not from what the clients claim:
//   - every acknowledged message is stored at its seq and delivered to every client exactly once,
//     in seq order;
//   - all clients of a room agree on seq -> message;
//   - refused or unacknowledged publishes are reported, never silently dropped;
//   - no gap is reported (history is configured to cover the run).
import { appendFileSync, writeFileSync } from "node:fs";
import { ALL_RIGHTS, api, rng, roomName, sleep, startEdge, tempDir, token, until } from "../harness.mjs";

export async function restartStorm({
  clients = 100,
  rooms = 4,
  messages = 10_000,
  restarts = 10,
  seed = 1,
  sdkShare = 0.5,
  logFile = `${tempDir("chaos")}/events.jsonl`,
  log = () => {},
} = {}) {
  if (typeof WebSocket === "undefined") throw new Error("run node with --experimental-websocket (Node 20) for the SDK's WebSocket");
  const { connect } = await import("../../sdk/dist/index.js");
  const random = rng(seed);
  const persistDir = tempDir("chaos-state");
  // History large enough that no resume can fall outside it: any gap would be a bug.
  const vars = { HISTORY_MAX_MESSAGES: 50_000, HISTORY_PAGE_MAX: 50_000, RATE_MESSAGES_PER_SEC: 1000, RATE_MESSAGES_BURST: 1000 };
  let edge = await startEdge({ persistDir, vars });
  const port = edge.port;
  const roomNames = Array.from({ length: rooms }, (_, i) => roomName(`chaos${i}`));
  writeFileSync(logFile, "");
  const record = (event) => appendFileSync(logFile, `${JSON.stringify(event)}\n`);

  // ---- clients -------------------------------------------------------------------------------
  // connectTimeoutMs: an attempt that reaches wrangler dev while its runtime restarts hangs until it times out.
  const fast = {
    minReconnectDelayMs: 200,
    maxReconnectDelayMs: 3000,
    connectTimeoutMs: 3000,
    pingIntervalMs: 5000,
    pongTimeoutMs: 5000,
    queueMax: 100_000,
  };
  const members = [];
  for (let i = 0; i < clients; i++) {
    const room = roomNames[i % rooms];
    const cid = `c${i}`;
    const r = connect({
      url: edge.url,
      room,
      clientId: cid,
      echo: true,
      seed: seed * 1000 + i,
      ...fast,
      token: async () => token(`u${i}`, { [room]: ALL_RIGHTS }),
    });
    const member = { cid, room, r, seqs: [], gaps: 0 };
    r.on("message", (m) => {
      member.seqs.push(m.seq);
      record({ t: "deliver", cid, room, seq: m.seq, key: m.data?.key });
    });
    r.on("gap", (g) => {
      member.gaps++;
      record({ t: "gap", cid, room, ...g });
    });
    members.push(member);
  }
  await until(() => members.every((m) => m.r.state === "open"), { timeoutMs: 60_000, intervalMs: 20, what: "all clients open" });
  log(`${clients} clients open in ${rooms} rooms`);

  // ---- publishers ----------------------------------------------------------------------------
  const acked = []; // { room, key, seq, via }
  const refused = [];
  const inflight = new Set();
  let published = 0;
  const publishOne = (n) => {
    const room = roomNames[n % rooms];
    const key = `m${n}`;
    if (random() < sdkShare) {
      const publishers = members.filter((m) => m.room === room);
      const p = publishers[Math.floor(random() * publishers.length)];
      const promise = p.r
        .publish({ key })
        .then(
          (seq) => {
            acked.push({ room, key, seq, via: "sdk" });
            record({ t: "ack", room, key, seq, via: "sdk" });
          },
          (e) => {
            refused.push({ room, key, via: "sdk", code: e.code });
            record({ t: "refused", room, key, code: e.code });
          },
        )
        .finally(() => inflight.delete(promise));
      inflight.add(promise);
    } else {
      // The HTTP API, retried with the same id until it answers: a retry is applied once.
      const promise = (async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            const res = await api(edge, "POST", `/rooms/${room}/messages`, { data: { key }, id: key });
            if (res.status === 200) {
              acked.push({ room, key, seq: res.json.seq, via: "http" });
              record({ t: "ack", room, key, seq: res.json.seq, via: "http" });
              return;
            }
            if (res.status < 500 && res.status !== 429) {
              refused.push({ room, key, via: "http", code: res.status });
              return;
            }
          } catch {
            /* the runtime is down: retry */
          }
          await sleep(100 + attempt * 50);
        }
      })().finally(() => inflight.delete(promise));
      inflight.add(promise);
    }
    published++;
  };

  // ---- the run: publish at a steady pace, restarting the runtime at random moments -----------
  const started = Date.now();
  const restartAt = new Set(Array.from({ length: restarts }, () => Math.floor(random() * messages)));
  while (restartAt.size < restarts) restartAt.add(Math.floor(random() * messages));
  const recoveries = [];
  for (let n = 0; n < messages; n++) {
    publishOne(n);
    if (n % 50 === 49) await sleep(10);
    if (inflight.size > 2000) await until(() => inflight.size < 1000, { timeoutMs: 120_000, intervalMs: 20, what: "publishes to drain" });
    if (restartAt.has(n)) {
      const downAt = Date.now();
      await edge.stop("SIGKILL");
      record({ t: "kill", n });
      await sleep(Math.floor(random() * 1500));
      edge = await startEdge({ persistDir, vars, port });
      const upAt = Date.now();
      await until(() => members.every((m) => m.r.state === "open"), {
        timeoutMs: 120_000,
        intervalMs: 20,
        what: "clients back after a restart",
      });
      recoveries.push({ downMs: upAt - downAt, allOpenMs: Date.now() - upAt });
      log(`restart ${recoveries.length}: runtime down ${upAt - downAt} ms, all clients open ${Date.now() - upAt} ms later`);
    }
  }
  await until(() => inflight.size === 0, { timeoutMs: 300_000, intervalMs: 20, what: "every publish to be acknowledged or refused" });

  // ---- checks, from the event log and the stored history --------------------------------------
  const stored = new Map(); // room -> Map(seq -> key)
  for (const room of roomNames) {
    const page = await api(edge, "GET", `/rooms/${room}/history?since=0&limit=50000`);
    stored.set(room, new Map(page.json.messages.map((m) => [m.seq, m.data.key])));
    const last = page.json.seq;
    await until(() => members.filter((m) => m.room === room).every((m) => m.seqs.at(-1) === last), {
      timeoutMs: 120_000,
      intervalMs: 20,
      what: `clients of ${room} to reach seq ${last}`,
    });
  }
  const problems = [];
  let lost = 0,
    duplicated = 0,
    reordered = 0,
    disagreements = 0;
  for (const a of acked) {
    if (stored.get(a.room).get(a.seq) !== a.key) {
      lost++;
      problems.push(`acknowledged ${a.key} not stored at ${a.room}#${a.seq}`);
    }
  }
  const keys = new Map();
  for (const [room, bySeq] of stored) for (const key of bySeq.values()) keys.set(`${room}/${key}`, (keys.get(`${room}/${key}`) ?? 0) + 1);
  for (const [k, count] of keys)
    if (count > 1) {
      duplicated += count - 1;
      problems.push(`${k} stored ${count} times`);
    }
  const deliveries = new Map(); // cid -> [[seq, key]]
  for (const line of (await import("node:fs")).readFileSync(logFile, "utf8").split("\n")) {
    if (!line) continue;
    const e = JSON.parse(line);
    if (e.t === "deliver") (deliveries.get(e.cid) ?? deliveries.set(e.cid, []).get(e.cid)).push([e.seq, e.key]);
  }
  for (const m of members) {
    const got = deliveries.get(m.cid) ?? [];
    const bySeq = stored.get(m.room);
    const seen = new Set();
    let previous = 0;
    for (const [seq, key] of got) {
      if (seen.has(seq)) duplicated++;
      if (seq <= previous) reordered++;
      if (bySeq.get(seq) !== key) disagreements++;
      seen.add(seq);
      previous = Math.max(previous, seq);
    }
    for (const seq of bySeq.keys())
      if (!seen.has(seq)) {
        lost++;
        problems.push(`${m.cid} never got ${m.room}#${seq}`);
      }
  }
  const gaps = members.reduce((n, m) => n + m.gaps, 0);
  for (const m of members) m.r.close();
  await edge.stop();
  return {
    clients,
    rooms,
    restarts: recoveries.length,
    published,
    acknowledged: acked.length,
    refused: refused.length,
    delivered: [...deliveries.values()].reduce((n, d) => n + d.length, 0),
    lost,
    duplicated,
    reordered,
    disagreements,
    gaps,
    recoveries,
    seconds: Math.round((Date.now() - started) / 1000),
    problems: problems.slice(0, 20),
    logFile,
  };
}
