// Webhook chaos: the restart storm's shape with webhooks on, delivered to a receiver that fails at
// random (fault-receiver.mjs). SDK clients (the built package, in Node) and HTTP publishers
// (single messages and batches) send numbered messages into a few rooms; churning users connect
// and leave, some for longer than the presence grace period; the runtime is killed with SIGKILL
// at random moments, some of them while the receiver holds a delivery (mid-batch), and some
// users quit while it is down. Then everyone leaves, the outboxes drain, and the receiver's log
// is checked against the rooms' stored history and the clients' own logs, not the room's word:
//   - every stored message reached the receiver (in a POST it answered 2xx in time) as a
//     message.published event with the same epoch, seq, from, user, data and messageId, and every
//     acknowledged publish is stored;
//   - no event reports a message that is not stored, a presence change no client made, or an
//     occupancy change while a client was connected;
//   - per room, events arrive in order (the first copy of each id: numbers and seqs increasing),
//     an id always carries the same event, and a batch's webhook-id names its first event;
//   - per user, joined and left alternate; every departure longer than the grace period has
//     exactly one presence.left, inside the departure; per room, occupied and vacated alternate;
//   - duplicates (the same id again) are allowed, and counted.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ALL_RIGHTS, api, apiKey, rng, roomName, sleep, startEdge, tempDir, token, until } from "../harness.mjs";
import { faultReceiver, webhookSecret } from "./fault-receiver.mjs";

export const ALL_EVENTS = "message.published,presence.joined,presence.left,room.occupied,room.vacated";
const TOL = 250; // ms: the room's clock and the clients' are the same machine's; ordering of observations

/**
 * GET with the API key that rides over a restart: retried while the runtime is down or 429/5xx.
 * Each try is bounded (a room that does not answer is an error, not a hang).
 */
async function apiRetry(getEdge, path, { timeoutMs = 60_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    let res;
    try {
      res = await fetch(`${getEdge().url}${path}`, {
        headers: { authorization: `Bearer ${apiKey()}` },
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      last = String(e.message ?? e); // the runtime is restarting, or the room did not answer
    }
    if (res?.status === 200) return res.json();
    if (res && res.status !== 429 && res.status < 500) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    if (res) last = `${res.status} ${await res.text()}`;
    if (Date.now() > deadline) throw new Error(`GET ${path} did not answer 200 within ${timeoutMs} ms (last: ${last})`);
    const wait = Number(res?.headers.get("retry-after") ?? 0) * 1000;
    await sleep(Math.max(100, Math.min(wait, 2000))); // what the server asked for, or a poll while it restarts
  }
}

/** Every stored message of a room, paging with `since`. */
async function fullHistory(getEdge, room) {
  const messages = [];
  let since = 0,
    epoch;
  for (;;) {
    const page = await apiRetry(getEdge, `/rooms/${room}/history?since=${since}&limit=1000`);
    epoch = page.epoch;
    messages.push(...page.messages);
    if (!page.more || page.messages.length === 0) break;
    since = page.messages.at(-1).seq;
  }
  return { epoch, messages };
}

const eventNumber = (id) => Number(/^evt_[0-9a-f]{16}_(\d+)$/.exec(id)?.[1] ?? NaN);
const canon = (v) => JSON.stringify(v);
/** How many of `items` have each key: `{ key: count }`. */
function countBy(items, key) {
  const counts = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

export async function webhookChaos({
  clients = 24,
  rooms = 3,
  churners = 9,
  messages = 5000,
  restarts = 5,
  seed = 1,
  durationMs = 90_000,
  graceMs = 1000,
  timeoutMs = 2000,
  batchMax,
  sdkShare = 0.4,
  httpBatchShare = 0.3,
  maxFailuresInRow = 4,
  drainTimeoutMs = 240_000,
  dir = tempDir("webhooks"),
  log = () => {},
} = {}) {
  if (typeof WebSocket === "undefined") throw new Error("run node with --experimental-websocket (Node 20) for the SDK's WebSocket");
  const { connect } = await import("../../sdk/dist/index.js");
  const random = rng(seed);
  const started = Date.now();
  const clientLog = join(dir, "clients.jsonl");
  writeFileSync(clientLog, "");
  const record = (event) => appendFileSync(clientLog, `${JSON.stringify({ at: Date.now(), ...event })}\n`);

  const secret = webhookSecret();
  const receiver = await faultReceiver({
    secret,
    seed: seed + 1,
    logFile: join(dir, "receiver.jsonl"),
    holdMs: timeoutMs + 1500,
    slowMs: Math.floor(timeoutMs / 3),
    maxFailuresInRow,
  });
  const persistDir = tempDir("webhooks-state");
  const vars = {
    HISTORY_MAX_MESSAGES: 50_000,
    HISTORY_PAGE_MAX: 1000,
    RATE_MESSAGES_PER_SEC: 1000,
    RATE_MESSAGES_BURST: 1000,
    HTTP_RATE_MESSAGES_PER_SEC: 10_000,
    HTTP_RATE_MESSAGES_BURST: 10_000,
    READ_BYTES_PER_SEC: 100_000_000,
    READ_BYTES_BURST: 100_000_000,
    PRESENCE_GRACE_MS: graceMs,
    WEBHOOK_URL: receiver.url,
    WEBHOOK_SECRET: secret,
    WEBHOOK_EVENTS: ALL_EVENTS,
    WEBHOOK_TIMEOUT_MS: timeoutMs,
    ...(batchMax ? { WEBHOOK_BATCH_MAX: batchMax } : {}),
  };
  let edge = await startEdge({ persistDir, vars });
  const getEdge = () => edge;
  const port = edge.port;
  const roomNames = Array.from({ length: rooms }, (_, i) => roomName(`hooks${i}`));
  const probe = await apiRetry(getEdge, `/rooms/${roomNames[0]}/stats`);
  if (!probe.webhook?.enabled) {
    await edge.stop();
    await receiver.close();
    throw new Error(`webhooks are not enabled in the runtime: stats say ${JSON.stringify(probe.webhook)}`);
  }

  // ---- the runtime's downtimes (for the presence checks) and the fault schedule ------------------
  const downs = []; // [killAt, upAt]
  const fast = {
    minReconnectDelayMs: 200,
    maxReconnectDelayMs: 3000,
    connectTimeoutMs: 3000,
    pingIntervalMs: 5000,
    pongTimeoutMs: 5000,
    queueMax: 100_000,
  };
  const metaOf = new Map(); // user -> token meta (or none)

  // ---- stable clients: connected the whole run, echo on ----------------------------------------
  const members = [];
  for (let i = 0; i < clients; i++) {
    const room = roomNames[i % rooms];
    const cid = `c${i}`,
      user = `s${i}`;
    const meta = i % 2 === 0 ? { name: `Stable ${i}`, n: i } : undefined;
    metaOf.set(user, meta);
    const r = connect({
      url: edge.url,
      room,
      clientId: cid,
      echo: true,
      seed: seed * 1000 + i,
      ...fast,
      token: async () => token(user, { [room]: ALL_RIGHTS }, { meta }),
    });
    const member = { cid, user, room, r };
    r.on("message", (m) => record({ t: "deliver", cid, room, seq: m.seq, key: m.data?.key }));
    r.on("status", (s) => record({ t: "status", cid, user, room, state: s.state, code: s.code }));
    r.on("gap", (g) => record({ t: "gap", cid, room, ...g }));
    members.push(member);
  }
  await until(() => members.every((m) => m.r.state === "open"), { timeoutMs: 60_000, intervalMs: 20, what: "all clients open" });
  log(`${clients} clients open in ${rooms} rooms, receiver on ${receiver.url}`);

  // ---- churners: users who come and go, one connection at a time ---------------------------------
  let churning = true;
  const churn = Array.from({ length: churners }, (_, j) => ({
    j,
    user: `w${j}`,
    room: roomNames[j % rooms],
    r: null,
    k: 0,
    quit: false,
    cycles: 0,
  }));
  for (const c of churn) metaOf.set(c.user, c.j % 3 === 0 ? undefined : { name: `Churner ${c.j}` });
  const churnRandom = rng(seed * 7 + 3);
  const churnLoop = async (c) => {
    while (churning && !c.quit) {
      const cid = `${c.user}-${c.k++}`;
      const meta = metaOf.get(c.user);
      record({ t: "connect", cid, user: c.user, room: c.room });
      const r = connect({
        url: `http://127.0.0.1:${port}`,
        room: c.room,
        clientId: cid,
        echo: false,
        seed: seed * 5000 + c.j * 100 + c.k,
        ...fast,
        token: async () => token(c.user, { [c.room]: ALL_RIGHTS }, { meta }),
      });
      c.r = r;
      r.on("status", (s) => record({ t: "status", cid, user: c.user, room: c.room, state: s.state, code: s.code }));
      await until(() => r.state === "open" || !churning || c.quit, { timeoutMs: 180_000, intervalMs: 20, what: `${cid} open` });
      if (!churning || c.quit) break;
      await sleep(300 + Math.floor(churnRandom() * 2000)); // time present: the fault schedule
      if (!churning || c.quit) break;
      record({ t: "close", cid, user: c.user, room: c.room });
      r.close();
      c.r = null;
      c.cycles++;
      // away: short (a reconnect inside the grace period: no departure) or long (a departure)
      const long = churnRandom() < 0.5;
      await sleep(long ? graceMs * 2 + 500 + Math.floor(churnRandom() * 1000) : Math.floor(graceMs * 0.3));
    }
  };
  const churnDone = Promise.all(churn.map(churnLoop));

  // ---- publishers ---------------------------------------------------------------------------------
  const acked = []; // { room, key, seq, via }
  const refused = [];
  const inflight = new Set();
  let published = 0;
  const track = (promise) => {
    inflight.add(promise);
    promise.finally(() => inflight.delete(promise));
  };
  const dataFor = (n) => {
    const data = { key: `m${n}`, n };
    if (n % 10 === 3) data.text = `héllo "${n}" \\ \u2028 ✓ <tag>`;
    if (n % 10 === 7) data.list = [n, null, true, { deep: [1.5, "x"] }];
    return data;
  };
  const httpPost = async (room, body, onOk) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await api(edge, "POST", `/rooms/${room}/messages`, body);
        if (res.status === 200) return onOk(res.json);
        if (res.status < 500 && res.status !== 429) return res.status;
      } catch {
        /* the runtime is down: retry */
      }
      await sleep(100 + Math.min(attempt, 20) * 50); // retry backoff
    }
  };
  const batches = new Map(); // room -> { items: [n], size }: one HTTP batch being filled per room
  let httpBatches = 0;
  const flushBatch = (room) => {
    const batch = batches.get(room);
    if (!batch) return;
    batches.delete(room);
    const { items } = batch;
    httpBatches++;
    track(
      (async () => {
        const status = await httpPost(
          room,
          items.map((n) => ({ data: dataFor(n), id: `m${n}` })),
          (json) => {
            json.messages.forEach((m, i) => {
              acked.push({ room, key: `m${items[i]}`, seq: m.seq, via: "batch" });
              record({ t: "ack", room, key: `m${items[i]}`, seq: m.seq, via: "batch" });
            });
          },
        );
        if (typeof status === "number") for (const n of items) refused.push({ room, key: `m${n}`, via: "batch", code: status });
      })(),
    );
  };
  const flushAll = () => {
    for (const room of [...batches.keys()]) flushBatch(room);
  };
  const publishOne = (n) => {
    const room = roomNames[n % rooms];
    const key = `m${n}`;
    const x = random();
    if (x < sdkShare) {
      const publishers = members.filter((m) => m.room === room);
      const p = publishers[Math.floor(random() * publishers.length)];
      track(
        p.r.publish(dataFor(n)).then(
          (seq) => {
            acked.push({ room, key, seq, via: "sdk" });
            record({ t: "ack", room, key, seq, via: "sdk" });
          },
          (e) => {
            refused.push({ room, key, via: "sdk", code: e.code });
            record({ t: "refused", room, key, code: e.code });
          },
        ),
      );
    } else if (x < sdkShare + httpBatchShare) {
      if (!batches.has(room)) batches.set(room, { items: [], size: 2 + Math.floor(random() * 7) });
      const batch = batches.get(room);
      batch.items.push(n);
      if (batch.items.length >= batch.size) flushBatch(room);
    } else {
      track(
        (async () => {
          const status = await httpPost(room, { data: dataFor(n), id: key }, (json) => {
            acked.push({ room, key, seq: json.seq, via: "http" });
            record({ t: "ack", room, key, seq: json.seq, via: "http" });
          });
          if (typeof status === "number") refused.push({ room, key, via: "http", code: status });
        })(),
      );
    }
    published++;
  };

  // ---- the run: a steady pace, SIGKILL at random moments, half of them mid-delivery ---------------
  const restartAt = new Set();
  while (restartAt.size < restarts) restartAt.add(Math.floor(random() * messages));
  const recoveries = [];
  let killedWhileHolding = 0,
    quitters = 0,
    pausedMs = 0;
  const runStart = Date.now();
  for (let n = 0; n < messages; n++) {
    publishOne(n);
    // pace: message n is due at runStart + n * durationMs / messages (restarts pause the clock)
    const due = runStart + pausedMs + Math.floor((n * durationMs) / messages);
    if (due > Date.now()) await sleep(due - Date.now());
    if (inflight.size > 2000) await until(() => inflight.size < 1000, { timeoutMs: 120_000, intervalMs: 20, what: "publishes to drain" });
    if (restartAt.has(n)) {
      flushAll();
      const pauseStart = Date.now();
      if (recoveries.length % 2 === 0) {
        // mid-batch: the next delivery is held past the timeout, and the kill comes while it is
        receiver.forceNext("hold");
        await receiver.whenHolding(15_000);
      }
      const holding = receiver.holding;
      const present = churn.filter((c) => !c.quit && c.r?.state === "open");
      const downAt = Date.now();
      await edge.stop("SIGKILL");
      writeFileSync(join(dir, `edge-${recoveries.length}.log`), edge.log);
      if (holding > 0) killedWhileHolding++;
      record({ t: "kill", n, holding });
      // A user present at the kill quits while the runtime is down: the room never sees the close.
      // (The churn goes on during the kill: a user may have left meanwhile, and has no client.)
      const stillThere = present.filter((c) => c.r && !c.quit);
      if (stillThere.length > 0 && quitters < Math.ceil(churners / 3)) {
        const c = stillThere[Math.floor(random() * stillThere.length)];
        c.quit = true;
        quitters++;
        record({ t: "close", cid: c.r.clientId, user: c.user, room: c.room, quit: true, killAt: downAt });
        c.r.close();
        c.r = null;
      }
      await sleep(Math.floor(random() * 1500)); // down for a random time: the fault schedule
      edge = await startEdge({ persistDir, vars, port });
      const upAt = Date.now();
      downs.push([downAt, upAt]);
      record({ t: "up" });
      await until(() => members.every((m) => m.r.state === "open"), {
        timeoutMs: 120_000,
        intervalMs: 20,
        what: "clients back after a restart",
      });
      recoveries.push({ downMs: upAt - downAt, allOpenMs: Date.now() - upAt, holding });
      log(
        `restart ${recoveries.length}: ${holding} deliveries held at the kill, runtime down ${upAt - downAt} ms, all clients open ${Date.now() - upAt} ms later`,
      );
      pausedMs += Date.now() - pauseStart;
    }
  }
  flushAll();
  await until(() => inflight.size === 0, { timeoutMs: 300_000, intervalMs: 20, what: "every publish to be acknowledged or refused" });
  log(`${published} published, ${acked.length} acknowledged; everyone leaves`);

  // ---- everyone leaves; then the outboxes drain ----------------------------------------------------
  churning = false;
  for (const c of churn) {
    if (c.r) {
      record({ t: "close", cid: c.r.clientId, user: c.user, room: c.room });
      c.r.close();
      c.r = null;
    }
  }
  await churnDone;
  for (const m of members) {
    record({ t: "close", cid: m.cid, user: m.user, room: m.room });
    m.r.close();
  }
  const leftAt = Date.now();
  const finalStats = new Map();
  // A wait that fails is a failed check (with the rooms' webhook state and the runtime's log
  // kept); the checks still run on what arrived, so the run's figures show what is missing.
  const waitFailures = [];
  const orFail = async (promise) => {
    try {
      return await promise;
    } catch (e) {
      writeFileSync(join(dir, "edge-last.log"), edge.log);
      const state = {};
      for (const room of roomNames)
        state[room] = await apiRetry(getEdge, `/rooms/${room}/stats`, { timeoutMs: 20_000 }).then(
          (s) => s.webhook,
          (err) => String(err.message),
        );
      waitFailures.push(`${e.message}; webhook state ${JSON.stringify(state)}`);
      log(waitFailures.at(-1));
      return false;
    }
  };
  for (const room of roomNames) {
    await orFail(
      until(async () => (await apiRetry(getEdge, `/rooms/${room}/presence`)).members.length === 0, {
        timeoutMs: graceMs * 10 + 30_000,
        intervalMs: 100,
        what: `${room} to be empty after the grace period`,
      }),
    );
  }
  const drainStart = Date.now();
  log(`rooms empty ${drainStart - leftAt} ms after everyone left; draining`);
  await orFail(
    until(
      async () => {
        for (const room of roomNames) {
          const s = await apiRetry(getEdge, `/rooms/${room}/stats`);
          finalStats.set(room, s.webhook);
          if (s.webhook.pending !== 0) return false;
        }
        return true;
      },
      { timeoutMs: drainTimeoutMs, intervalMs: 200, what: "every room's webhook outbox to drain (stats webhook.pending == 0)" },
    ),
  );
  const drainMs = Date.now() - drainStart;
  writeFileSync(join(dir, "edge-last.log"), edge.log);
  if (waitFailures.length === 0) log(`outboxes drained ${drainMs} ms after the rooms emptied`);

  // ---- the truth: stored history, the clients' log, the receiver's log ----------------------------
  const stored = new Map(); // room -> { epoch, bySeq: Map(seq -> message) }
  for (const room of roomNames) {
    const { epoch, messages: list } = await fullHistory(getEdge, room);
    stored.set(room, { epoch, bySeq: new Map(list.map((m) => [m.seq, m])) });
  }
  await edge.stop();
  await receiver.close();

  writeFileSync(
    join(dir, "truth.json"),
    JSON.stringify({
      roomNames,
      graceMs,
      metaOf: Object.fromEntries(metaOf),
      finalStats: Object.fromEntries(finalStats),
      waitFailures,
      stored: Object.fromEntries([...stored].map(([room, { epoch, bySeq }]) => [room, { epoch, messages: [...bySeq.values()] }])),
    }),
  );
  const check = checkRun(dir);
  return {
    part: "webhooks",
    verifier: receiver.verifier,
    clients,
    churners,
    rooms,
    restarts: recoveries.length,
    killedWhileHolding,
    published,
    acknowledged: acked.length,
    refused: refused.length,
    stored: check.stored,
    httpBatches,
    acknowledgedVia: countBy(acked, (a) => a.via),
    events: check.events,
    requests: {
      total: receiver.counts.requests,
      verified: receiver.counts.verified,
      answered500: receiver.counts.fail,
      heldPastTimeout: receiver.counts.hold,
      reset: receiver.counts.reset,
      slow: receiver.counts.slow,
      ok: receiver.counts.ok,
    },
    presence: check.presence,
    checks: check.counts,
    failed: check.failed,
    recoveries,
    drainMs,
    webhookStats: Object.fromEntries(finalStats),
    seconds: Math.round((Date.now() - started) / 1000),
    problems: check.problems,
    logs: dir,
  };
}

/**
 * The checks, from the files a run leaves in `dir` only: receiver.jsonl (what the receiver got),
 * clients.jsonl (what the clients did and saw, kills and restarts), truth.json (the rooms' stored
 * history read back after the run, and the run's settings). So a run can be checked again, and
 * the checks can be shown to fail on a log with an event removed, moved or invented.
 */
export function checkRun(dir) {
  const truth = JSON.parse(readFileSync(join(dir, "truth.json"), "utf8"));
  const { roomNames, graceMs } = truth;
  const metaOf = new Map(Object.entries(truth.metaOf));
  const finalStats = new Map(Object.entries(truth.finalStats));
  const stored = new Map(
    Object.entries(truth.stored).map(([room, { epoch, messages }]) => [room, { epoch, bySeq: new Map(messages.map((m) => [m.seq, m])) }]),
  );
  const lines = readFileSync(join(dir, "receiver.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const clientEvents = readFileSync(join(dir, "clients.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const acked = clientEvents.filter((c) => c.t === "ack");
  const quitters = clientEvents.filter((c) => c.t === "close" && c.quit).length;
  const downs = [];
  for (const c of clientEvents) {
    if (c.t === "kill") downs.push([c.at, Infinity]);
    if (c.t === "up") downs.at(-1)[1] = c.at;
  }
  const problems = [];
  const problem = (kind, text) => {
    if (counts[kind]++ < 5) problems.push(`${kind}: ${text}`);
  }; // 5 of each kind
  const counts = {
    badSignatures: 0,
    lostMessages: 0,
    ackNotStored: 0,
    inventedMessages: 0,
    mismatchedMessages: 0,
    clientDisagreements: 0,
    reordered: 0,
    changedOnRetry: 0,
    badIds: 0,
    badBatchIds: 0,
    missingNumbers: 0,
    presenceAlternation: 0,
    missedLeft: 0,
    extraLeft: 0,
    inventedLeft: 0,
    inventedJoin: 0,
    badMeta: 0,
    occupancyAlternation: 0,
    inventedVacate: 0,
    occupancyAdjacency: 0,
    deadLetters: 0,
    notDrained: 0,
  };
  for (const w of truth.waitFailures ?? []) problem("notDrained", w);

  // signatures
  for (const l of lines) if (l.bad) problem("badSignatures", `${l.webhookId}: ${l.bad}`);

  // ids, batches, duplicates, order of first arrival
  const firstSeen = new Map(); // id -> event JSON
  const delivered = new Set(); // ids in a POST answered 2xx within the timeout
  const byRoom = new Map(); // room -> [event] in first-arrival order
  const roomKey = new Map();
  let duplicates = 0;
  const byRequest = new Map();
  for (const l of lines) {
    if (l.bad) continue;
    const e = l.event;
    (byRequest.get(l.req) ?? byRequest.set(l.req, []).get(l.req)).push(l);
    if (l.mode === "ok" || l.mode === "slow") delivered.add(e.id);
    const n = eventNumber(e.id);
    if (!Number.isSafeInteger(n) || typeof e.room !== "string") {
      problem("badIds", `${JSON.stringify(e).slice(0, 200)}`);
      continue;
    }
    const key = e.id.slice(4, 20);
    if ((roomKey.get(e.room) ?? roomKey.set(e.room, key).get(e.room)) !== key) problem("badIds", `${e.id} in ${e.room}: another room key`);
    const json = canon(e);
    if (firstSeen.has(e.id)) {
      duplicates++;
      if (firstSeen.get(e.id) !== json)
        problem("changedOnRetry", `${e.id}: ${firstSeen.get(e.id).slice(0, 200)} then ${json.slice(0, 200)}`);
      continue;
    }
    firstSeen.set(e.id, json);
    const list = byRoom.get(e.room) ?? byRoom.set(e.room, []).get(e.room);
    const prev = list.at(-1);
    if (prev && eventNumber(prev.id) >= n) problem("reordered", `${e.room}: ${e.id} arrived after ${prev.id}`);
    if (e.type === "message.published") {
      const prevMsg = list.findLast((x) => x.type === "message.published");
      if (prevMsg && prevMsg.seq >= e.seq) problem("reordered", `${e.room}: seq ${e.seq} arrived after seq ${prevMsg.seq}`);
    }
    list.push(e);
  }
  const keys = new Set(roomKey.values());
  if (keys.size !== roomKey.size) problem("badIds", "two rooms share an outbox key");
  for (const [req, ls] of byRequest) {
    const want = `batch_${ls[0].event.id}_${ls.length}`;
    if (ls[0].webhookId !== want) problem("badBatchIds", `request ${req}: webhook-id ${ls[0].webhookId}, expected ${want}`);
    for (let i = 1; i < ls.length; i++) {
      if (eventNumber(ls[i].event.id) <= eventNumber(ls[i - 1].event.id))
        problem("reordered", `request ${req}: ${ls[i].event.id} after ${ls[i - 1].event.id} in one batch`);
    }
  }
  for (const [room, list] of byRoom) {
    const ns = list.map((e) => eventNumber(e.id)).sort((a, b) => a - b);
    for (let i = 1; i < ns.length; i++)
      if (ns[i] !== ns[i - 1] + 1) problem("missingNumbers", `${room}: no event numbered ${ns[i - 1] + 1}..${ns[i] - 1}`);
  }

  // messages: stored <-> events, acks and deliveries from the clients' log
  const published_ = new Map(); // room -> Map(seq -> event)
  for (const [room, list] of byRoom) {
    const m = new Map();
    for (const e of list) if (e.type === "message.published") m.set(e.seq, e);
    published_.set(room, m);
  }
  const same = (e, m, epoch) =>
    e.epoch === epoch
    && e.seq === m.seq
    && e.from === m.from
    && e.user === m.user
    && canon(e.data) === canon(m.data)
    && e.messageId === m.id;
  let storedCount = 0;
  for (const [room, { epoch, bySeq }] of stored) {
    const events = published_.get(room) ?? new Map();
    for (const m of bySeq.values()) {
      storedCount++;
      const e = events.get(m.seq);
      if (!e) {
        problem("lostMessages", `${room}#${m.seq} (${m.data?.key}) has no message.published event`);
        continue;
      }
      if (!same(e, m, epoch))
        problem("mismatchedMessages", `${room}#${m.seq}: stored ${canon(m).slice(0, 200)}, event ${canon(e).slice(0, 200)}`);
      else if (!delivered.has(e.id)) problem("lostMessages", `${room}#${m.seq}: its event ${e.id} was never answered 2xx`);
    }
    for (const e of events.values()) if (!bySeq.has(e.seq)) problem("inventedMessages", `${e.id}: ${room}#${e.seq} is not stored`);
  }
  for (const e of firstSeen.values()) {
    const ev = JSON.parse(e);
    if (!stored.has(ev.room)) problem("inventedMessages", `${ev.id}: room ${ev.room} is not one of the run's`);
  }
  for (const a of acked) {
    if (stored.get(a.room).bySeq.get(a.seq)?.data?.key !== a.key)
      problem("ackNotStored", `${a.key} acknowledged at ${a.room}#${a.seq} (${a.via}) is not stored there`);
  }
  for (const c of clientEvents) {
    if (c.t !== "deliver") continue;
    const m = stored.get(c.room).bySeq.get(c.seq);
    if (m?.data?.key !== c.key || published_.get(c.room)?.get(c.seq)?.data?.key !== c.key) {
      problem(
        "clientDisagreements",
        `${c.cid} got ${c.key} at ${c.room}#${c.seq}; stored ${m?.data?.key}, event ${published_.get(c.room)?.get(c.seq)?.data?.key}`,
      );
    }
  }

  // presence: each user's open intervals and departures, from the clients' own log
  const intervals = new Map(); // user -> [[openAt, closeAt]]
  const openSince = new Map(); // cid -> at
  const userRoom = new Map();
  const firstAttempt = new Map(); // user -> when their first connection was started
  const closes = new Map(); // user -> [{at, quit, killAt}]
  const connects = new Map(); // user -> [at]
  const attempts = new Map(); // user -> [at]: a connect() or the SDK (re)connecting
  const push = (map, k, v) => (map.get(k) ?? map.set(k, []).get(k)).push(v);
  for (const c of clientEvents) {
    if (c.user) userRoom.set(c.user, c.room);
    if (c.user && !firstAttempt.has(c.user)) firstAttempt.set(c.user, c.at);
    if (c.t === "status") {
      if (c.state === "open") {
        if (!openSince.has(c.cid)) openSince.set(c.cid, c.at);
      } else if (openSince.has(c.cid)) {
        push(intervals, c.user, [openSince.get(c.cid), c.at]);
        openSince.delete(c.cid);
      }
    }
    if (c.t === "close") push(closes, c.user, { at: c.quit ? c.killAt : c.at, quit: !!c.quit });
    if (c.t === "connect") push(connects, c.user, c.at);
    if (c.t === "connect" || (c.t === "status" && (c.state === "connecting" || c.state === "reconnecting"))) push(attempts, c.user, c.at);
  }
  for (const [cid, at] of openSince) problem("presenceAlternation", `${cid} still open at the end (since ${at})`);
  const killedIn = (a, b) => downs.some(([k]) => k >= a && k <= b);
  const departures = new Map(); // user -> [{start, end, cause, nextConnect, mustLeave}]
  const figures = { departures: 0, longDepartures: 0, shortDepartures: 0, crashDepartures: 0, quitters };
  for (const user of userRoom.keys()) if (!intervals.has(user)) intervals.set(user, []);
  for (const [user, ivs] of intervals) {
    ivs.sort((a, b) => a[0] - b[0]);
    const merged = [];
    for (const iv of ivs) {
      if (merged.length && iv[0] <= merged.at(-1)[1]) merged.at(-1)[1] = Math.max(merged.at(-1)[1], iv[1]);
      else merged.push([...iv]);
    }
    const list = [];
    // Before the first open the room may already have taken a connection the client never saw
    // open (a kill between the room's welcome and the client reading it): a departure of unknown
    // kind, from the first attempt.
    const first = firstAttempt.get(user);
    if (first !== undefined && (merged.length === 0 || merged[0][0] > first + TOL)) {
      list.push({ start: first, end: merged[0]?.[0] ?? Infinity, cause: "crash", nextConnect: undefined, mustLeave: false });
    }
    for (let i = 0; i < merged.length; i++) {
      const start = merged[i][1],
        stop = merged[i + 1]?.[0] ?? Infinity;
      // client-caused: a close() at the start of the gap (a quitter's at the kill); else the runtime's crash
      const close = (closes.get(user) ?? []).find((c) => c.at >= merged[i][0] - TOL && c.at <= start + TOL);
      const nextConnect = close ? ((connects.get(user) ?? []).find((t) => t >= start) ?? Infinity) : undefined;
      const cause = close ? "client" : "crash";
      const away = (nextConnect ?? stop) - start;
      const mustLeave =
        stop === Infinity || (cause === "client" && away >= graceMs + 1000 && !killedIn(start - TOL, start + graceMs + 1000));
      list.push({ start, end: stop, cause, nextConnect, mustLeave });
      figures.departures++;
      if (cause === "crash") figures.crashDepartures++;
      else if (away >= graceMs + 1000) figures.longDepartures++;
      else if (away < graceMs - TOL) figures.shortDepartures++;
    }
    departures.set(user, list);
  }
  const presenceEvents = new Map(); // user -> [event] by number
  const occupancy = new Map(); // room -> [event]
  for (const [room, list] of byRoom) {
    for (const e of list) {
      if (e.type === "presence.joined" || e.type === "presence.left") push(presenceEvents, e.user, e);
      if (e.type === "room.occupied" || e.type === "room.vacated") push(occupancy, room, e);
    }
  }
  let lefts = 0,
    joins = 0;
  for (const [user, evs] of presenceEvents) {
    if (!userRoom.has(user)) {
      problem("inventedJoin", `events for ${user}, who never connected`);
      continue;
    }
    evs.sort((a, b) => eventNumber(a.id) - eventNumber(b.id));
    evs.forEach((e, i) => {
      const want = i % 2 === 0 ? "presence.joined" : "presence.left";
      if (e.type !== want) problem("presenceAlternation", `${user}: event ${i} is ${e.type} (${e.id}), expected ${want}`);
      if (e.room !== userRoom.get(user)) problem("inventedJoin", `${e.id}: ${user} in ${e.room}`);
      const meta = metaOf.get(user);
      if ((e.meta !== undefined || e.type === "presence.joined") && canon(e.meta) !== canon(meta))
        problem("badMeta", `${e.id}: meta ${canon(e.meta)}, token's ${canon(meta)}`);
    });
    if (evs.at(-1)?.type !== "presence.left")
      problem("presenceAlternation", `${user}: the last event is ${evs.at(-1)?.type}, but everyone left`);
    const deps = departures.get(user) ?? [];
    for (const e of evs) {
      if (e.type === "presence.joined") {
        joins++;
        // a join while the user had no connection and was not trying to open one
        const quiet = deps.find((d) => d.cause === "client" && e.ts > d.start + TOL && e.ts < (d.nextConnect ?? d.end) - TOL);
        if (quiet) problem("inventedJoin", `${e.id}: ${user} joined at ${e.ts}, away from ${quiet.start} to ${quiet.nextConnect}`);
        continue;
      }
      lefts++;
      const d = deps.find((x) => e.ts >= x.start + graceMs - TOL && e.ts <= x.end + TOL);
      if (!d) problem("inventedLeft", `${e.id}: ${user} left at ${e.ts}, outside every departure of theirs longer than the grace period`);
    }
    for (const d of deps) {
      const inside = evs.filter((e) => e.type === "presence.left" && e.ts >= d.start - TOL && e.ts <= d.end + TOL);
      // Two lefts in one departure need a connection between them: one the client started
      // (it may have been taken by the room before the client saw it open, or closed first).
      for (let i = 1; i < inside.length; i++) {
        const [a, b] = [inside[i - 1].ts, inside[i].ts];
        if (!(attempts.get(user) ?? []).some((t) => t > a - TOL && t < b + TOL)) {
          problem(
            "extraLeft",
            `${user}: 2 presence.left in the departure from ${d.start} with no connection between them: ${inside[i - 1].id}, ${inside[i].id}`,
          );
        }
      }
      if (d.mustLeave && inside.length === 0)
        problem("missedLeft", `${user}: no presence.left for the departure ${d.start}..${d.end} (${d.cause})`);
    }
  }
  for (const [user, deps] of departures) {
    if (!presenceEvents.has(user) && deps.some((d) => d.mustLeave)) problem("missedLeft", `${user}: no presence event at all`);
  }

  // occupancy: alternate per room; vacated right after a left, occupied right before a joined; not
  // vacated while a client of the room was open
  const openIntervals = new Map(); // room -> [[a, b]]
  for (const [user, ivs] of intervals) for (const iv of ivs) push(openIntervals, userRoom.get(user), iv);
  for (const room of roomNames) {
    const evs = occupancy.get(room) ?? [];
    const all = byRoom.get(room) ?? [];
    evs.forEach((e, i) => {
      const want = i % 2 === 0 ? "room.occupied" : "room.vacated";
      if (e.type !== want) problem("occupancyAlternation", `${room}: event ${i} is ${e.type} (${e.id}), expected ${want}`);
      const at = all.findIndex((x) => x.id === e.id);
      const before = all.slice(0, at).findLast((x) => x.type !== "message.published");
      const after = all.slice(at + 1).find((x) => x.type !== "message.published");
      if (e.type === "room.vacated" && before?.type !== "presence.left")
        problem("occupancyAdjacency", `${e.id}: vacated after ${before?.type}`);
      if (e.type === "room.occupied" && after && after.type !== "presence.joined")
        problem("occupancyAdjacency", `${e.id}: occupied before ${after?.type}`);
      if (e.type === "room.vacated") {
        const busy = (openIntervals.get(room) ?? []).find(([a, b]) => a < e.ts - TOL && b > e.ts + TOL);
        if (busy) problem("inventedVacate", `${e.id}: vacated at ${e.ts} while a client was open ${busy[0]}..${busy[1]}`);
      }
    });
    if (evs.length === 0 || evs.at(-1).type !== "room.vacated")
      problem("occupancyAlternation", `${room}: the last occupancy event is ${evs.at(-1)?.type}, but everyone left`);
    const w = finalStats.get(room);
    if (w?.deadLetters) problem("deadLetters", `${room}: ${w.deadLetters} dead letters`);
  }
  const types = {};
  for (const e of firstSeen.values()) {
    const t = JSON.parse(e).type;
    types[t] = (types[t] ?? 0) + 1;
  }
  const failed = Object.values(counts).reduce((a, b) => a + b, 0);
  return {
    stored: storedCount,
    counts,
    failed,
    problems,
    events: { received: lines.filter((l) => !l.bad).length, distinct: firstSeen.size, duplicates, byType: types },
    presence: { ...figures, joins, lefts },
  };
}
