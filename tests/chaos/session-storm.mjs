// Session storm: devices of several users, each on one session socket (the built SDK's
// createClient(), in Node), joined to several rooms each; they publish and mark rooms read while
// the local runtime is killed with SIGKILL and restarted. Afterwards the checks run on the
// recorded log and the rooms' stored history only (`checkSessionRun`, a pure function, shown to
// fire on tampered logs by tests/unit/session-check.test.mjs):
//   - per device per room: every stored message delivered exactly once, in seq order, as stored
//     (the devices join before the first publish, so they must get all of it);
//   - every acknowledged publish is stored at its seq;
//   - every read position a device learns never moves back.
import { ALL_RIGHTS, api, rng, roomName, sleep, startEdge, tempDir, token, until } from "../harness.mjs";

/**
 * The checks. `stored`: room -> Map(seq -> key); `log`: the run's events in order (`deliver`
 * {device, room, seq, key}, `ack` {room, key, seq}, `read` {device, room, seq}); `members`:
 * [{device, rooms}]. Returns counts per kind and the first problems.
 */
export function checkSessionRun({ stored, log, members }) {
  const counts = { lost: 0, duplicated: 0, reordered: 0, disagreements: 0, unstoredAcks: 0, readsBack: 0 };
  const problems = [];
  const problem = (kind, text) => {
    counts[kind]++;
    if (problems.length < 20) problems.push(`${kind}: ${text}`);
  };
  for (const e of log.filter((e) => e.t === "ack")) {
    if (stored.get(e.room)?.get(e.seq) !== e.key) problem("unstoredAcks", `${e.key} acknowledged as ${e.room}#${e.seq}`);
  }
  const delivered = new Map(); // `${device} ${room}` -> [[seq, key]]
  const reads = new Map(); // `${device} ${room}` -> last read seq seen
  for (const e of log) {
    const k = `${e.device} ${e.room}`;
    if (e.t === "deliver") (delivered.get(k) ?? delivered.set(k, []).get(k)).push([e.seq, e.key]);
    if (e.t === "read") {
      if (e.seq < (reads.get(k) ?? 0)) problem("readsBack", `${k}: read ${e.seq} after ${reads.get(k)}`);
      reads.set(k, Math.max(e.seq, reads.get(k) ?? 0));
    }
  }
  for (const { device, rooms } of members) {
    for (const room of rooms) {
      const got = delivered.get(`${device} ${room}`) ?? [];
      const bySeq = stored.get(room) ?? new Map();
      const seen = new Set();
      let previous = 0;
      for (const [seq, key] of got) {
        if (seen.has(seq)) problem("duplicated", `${device} got ${room}#${seq} twice`);
        else if (seq < previous) problem("reordered", `${device} got ${room}#${seq} after #${previous}`);
        if (bySeq.get(seq) !== key) problem("disagreements", `${device} got ${room}#${seq} as ${key}, stored ${bySeq.get(seq)}`);
        seen.add(seq);
        previous = Math.max(previous, seq);
      }
      for (const seq of bySeq.keys()) if (!seen.has(seq)) problem("lost", `${device} never got ${room}#${seq}`);
    }
  }
  return { ...counts, problems };
}

export async function sessionStorm({
  users = 8,
  devicesPerUser = 3,
  rooms = 10,
  roomsPerUser = 4,
  messages = 2_000,
  restarts = 3,
  seed = 1,
  log: say = () => {},
} = {}) {
  if (typeof WebSocket === "undefined") throw new Error("run node with --experimental-websocket (Node 20) for the SDK's WebSocket");
  const { createClient } = await import("../../sdk/dist/index.js");
  const random = rng(seed);
  const persistDir = tempDir("session-storm");
  const vars = {
    HISTORY_MAX_MESSAGES: 50_000,
    HISTORY_PAGE_MAX: 50_000,
    RATE_MESSAGES_PER_SEC: 1000,
    RATE_MESSAGES_BURST: 1000,
    UPGRADE_LIMITER: "",
  };
  let edge = await startEdge({ persistDir, vars });
  const port = edge.port;
  const roomNames = Array.from({ length: rooms }, (_, i) => roomName(`storm${i}`));
  const log = [];
  const fast = { minReconnectDelayMs: 200, maxReconnectDelayMs: 3000, connectTimeoutMs: 3000, pingIntervalMs: 5000, pongTimeoutMs: 5000 };

  // ---- devices: each user's rooms, joined on every one of their devices ------------------------
  const members = [];
  for (let u = 0; u < users; u++) {
    const user = `su${u}`;
    const mine = Array.from({ length: roomsPerUser }, (_, i) => roomNames[(u + i * 3) % rooms]);
    for (let d = 0; d < devicesPerUser; d++) {
      const device = `${user}-d${d}`;
      const client = createClient({
        url: edge.url,
        clientId: device,
        seed: seed * 1000 + members.length,
        token: async () => token(user, { "*": ALL_RIGHTS }),
        queueMax: 100_000,
        ...fast,
      });
      const joined = new Map();
      for (const room of new Set(mine)) {
        const r = client.join(room, { echo: true, queueMax: 100_000, ...fast });
        r.on("message", (m) => log.push({ t: "deliver", device, room, seq: m.seq, key: m.data?.key }));
        r.on("read", (e) => log.push({ t: "read", device, room, seq: e.seq }));
        joined.set(room, r);
      }
      members.push({ device, user, client, joined, rooms: [...joined.keys()] });
    }
  }
  const allOpen = () => members.every((m) => [...m.joined.values()].every((r) => r.state === "open"));
  await until(allOpen, { timeoutMs: 60_000, intervalMs: 20, what: "every device's rooms open" });
  say(`${members.length} devices of ${users} users open in ${rooms} rooms`);

  // ---- publishes and read marks, with SIGKILL restarts ------------------------------------------
  const inflight = new Set();
  let published = 0,
    refused = 0;
  const restartAt = new Set();
  while (restartAt.size < restarts) restartAt.add(1 + Math.floor(random() * (messages - 1)));
  const recoveries = [];
  for (let n = 0; n < messages; n++) {
    const m = members[Math.floor(random() * members.length)];
    const room = m.rooms[Math.floor(random() * m.rooms.length)];
    const r = m.joined.get(room);
    const key = `k${n}`;
    const p = r
      .publish({ key })
      .then(
        (seq) => log.push({ t: "ack", room, key, seq }),
        () => refused++,
      )
      .finally(() => inflight.delete(p));
    inflight.add(p);
    published++;
    if (n % 25 === 24) {
      // a device marks one of its rooms read where it stands
      const reader = members[Math.floor(random() * members.length)];
      const rr = reader.joined.get(reader.rooms[0]);
      if (rr.state === "open" && rr.lastSeq > 0) rr.markRead(rr.lastSeq);
      await sleep(10);
    }
    if (restartAt.has(n)) {
      const downAt = Date.now();
      await edge.stop("SIGKILL");
      log.push({ t: "kill", n });
      await sleep(Math.floor(random() * 1500));
      edge = await startEdge({ persistDir, vars, port });
      const upAt = Date.now();
      await until(allOpen, { timeoutMs: 120_000, intervalMs: 20, what: "every room open again after a restart" });
      recoveries.push({ downMs: upAt - downAt, allOpenMs: Date.now() - upAt });
      say(`restart ${recoveries.length}: down ${upAt - downAt} ms, every device's rooms open ${Date.now() - upAt} ms later`);
    }
  }
  await until(() => inflight.size === 0, { timeoutMs: 300_000, intervalMs: 20, what: "every publish settled" });

  // ---- the truth: each room's stored history, and every device caught up with it ---------------
  const stored = new Map();
  for (const room of roomNames) {
    const page = await api(edge, "GET", `/rooms/${room}/history?since=0&limit=50000`);
    stored.set(room, new Map(page.json.messages.map((m) => [m.seq, m.data?.key])));
  }
  const caughtUp = () =>
    members.every((m) =>
      m.rooms.every((room) => {
        const last = Math.max(0, ...stored.get(room).keys());
        return m.joined.get(room).lastSeq >= last;
      }),
    );
  await until(caughtUp, { timeoutMs: 120_000, intervalMs: 50, what: "every device caught up" }).catch(() => {});
  const check = checkSessionRun({ stored, log, members });
  for (const m of members) m.client.close();
  await edge.stop();
  return {
    devices: members.length,
    users,
    rooms,
    restarts: recoveries.length,
    published,
    acknowledged: log.filter((e) => e.t === "ack").length,
    refused,
    delivered: log.filter((e) => e.t === "deliver").length,
    reads: log.filter((e) => e.t === "read").length,
    recoveries,
    ...check,
  };
}
