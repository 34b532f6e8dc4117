// The room's side of chat, cursors and typing (issue #15), with raw protocol clients against the
// real runtime: history over the socket, rewind on join racing live publishes, ephemeral
// broadcasts, presence state, and the HTTP history endpoint paging backwards for pages on allowed
// origins (CORS).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ALL_RIGHTS, api, apiKey, Client, roomName, startEdge, token } from "../harness.mjs";

const ORIGIN = "https://app.example";
let edge;
before(async () => {
  edge = await startEdge({ vars: { ALLOWED_ORIGINS: ORIGIN, UPGRADE_LIMITER: "", PRESENCE_RATE_PER_SEC: 5 } });
});
after(async () => {
  await edge?.stop();
});

async function fill(room, n) {
  const res = await api(
    edge,
    "POST",
    `/rooms/${room}/messages`,
    Array.from({ length: n }, (_, i) => ({ data: i + 1 })),
  );
  assert.equal(res.status, 200, res.text);
}

const seqsOf = (frame) => frame.messages.map((m) => m.seq);

test("history over the socket pages back to the start and forward to the end", async () => {
  const room = roomName("ws-history");
  await fill(room, 7);
  const c = await Client.connect(edge, room, { cid: "reader", user: "reader" });
  const ask = async (id, extra) => {
    c.send({ type: "history", id, ...extra });
    return c.next((f) => (f.type === "history" || f.type === "error") && f.id === id);
  };
  const latest = await ask("h1", { limit: 3 });
  assert.deepEqual([seqsOf(latest), latest.more], [[5, 6, 7], true]);
  assert.deepEqual(
    latest.messages.map((m) => m.data),
    [5, 6, 7],
  );
  const older = await ask("h2", { limit: 3, before: 5 });
  assert.deepEqual([seqsOf(older), older.more], [[2, 3, 4], true]);
  const oldest = await ask("h3", { limit: 3, before: 2 });
  assert.deepEqual([seqsOf(oldest), oldest.more], [[1], false]);
  const forward = await ask("h4", { limit: 5, since: 3 });
  assert.deepEqual([seqsOf(forward), forward.more], [[4, 5, 6, 7], false]);
  const both = await ask("h5", { before: 3, since: 1 });
  assert.equal(both.code, "bad_frame");
  assert.equal(c.messages().length, 0, "history answers are not live messages");
  await c.close();
});

test("rewind: the last N messages, then live ones, with no gap or duplicate while publishes race the join", async () => {
  const room = roomName("rewind");
  await fill(room, 20);
  const publisher = await Client.connect(edge, room, { cid: "pub", user: "pub" });
  let n = 0;
  let racing = true;
  // Paced inside the room's message rate (50/s, burst 100), so no publish is refused.
  const race = (async () => {
    while (racing) {
      await publisher.publish(`live-${++n}`, `live ${n}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const joiners = await Promise.all([1, 2, 3, 4].map((i) => Client.connect(edge, room, { cid: `j${i}`, user: `j${i}`, rewind: 5 })));
  racing = false;
  await race;
  const last = (await api(edge, "GET", `/rooms/${room}/stats`)).json.seq;
  for (const j of joiners) {
    await j.next((f) => f.type === "message" && f.seq === last);
    const head = j.welcome.seq;
    assert.equal(j.welcome.rewind.replayed, 5);
    const seqs = j.messages().map((m) => m.seq);
    const expected = Array.from({ length: last - (head - 5) }, (_, i) => head - 4 + i);
    assert.deepEqual(seqs, expected, `contiguous from head-4 (${head - 4}) to ${last}, no duplicate`);
  }
  await Promise.all([publisher, ...joiners].map((c) => c.close()));
});

test("broadcasts: delivered now, never stored or replayed, not to members who join later, and in order with stored messages", async () => {
  const room = roomName("broadcast");
  const alice = await Client.connect(edge, room, { cid: "a", user: "alice" });
  const bob = await Client.connect(edge, room, { cid: "b", user: "bob" });
  await alice.publish("m1", "first");
  alice.send({ type: "broadcast", id: "b1", data: { typing: true } });
  assert.deepEqual(await alice.next((f) => f.id === "b1"), { type: "ack", id: "b1" });
  await alice.publish("m2", "second");
  await bob.next((f) => f.type === "message" && f.seq === 2);
  const kinds = bob.frames.filter((f) => ["message", "broadcast"].includes(f.type)).map((f) => f.type);
  assert.deepEqual(kinds, ["message", "broadcast", "message"], "the broadcast keeps its place among stored messages");
  const b = bob.frames.find((f) => f.type === "broadcast");
  assert.deepEqual([b.from, b.user, b.data], ["a", "alice", { typing: true }]);
  assert.equal(b.seq, undefined, "no seq");
  assert.equal(alice.frames.filter((f) => f.type === "broadcast").length, 0, "echo off");

  const stats = (await api(edge, "GET", `/rooms/${room}/stats`)).json;
  assert.deepEqual([stats.seq, stats.history], [2, 2], "not stored");
  const history = (await api(edge, "GET", `/rooms/${room}/history?since=0`)).json;
  assert.deepEqual(
    history.messages.map((m) => m.data),
    ["first", "second"],
  );
  const late = await Client.connect(edge, room, { cid: "c", user: "carol", since: 0, epoch: bob.welcome.epoch });
  await late.next((f) => f.type === "message" && f.seq === 2);
  const rewound = await Client.connect(edge, room, { cid: "d", user: "dave", rewind: 10 });
  await rewound.next((f) => f.type === "message" && f.seq === 2);
  for (const c of [late, rewound]) assert.equal(c.frames.filter((f) => f.type === "broadcast").length, 0, "never replayed");
  await Promise.all([alice, bob, late, rewound].map((c) => c.close()));
});

test("presence state: a 60 Hz update loop reaches the others coalesced, ending on the latest state", async () => {
  const room = roomName("presence-state");
  const watcher = await Client.connect(edge, room, { cid: "w", user: "watcher" });
  const cursor = await Client.connect(edge, room, { cid: "c", user: "mover", meta: JSON.stringify({ name: "Mover" }) });
  await watcher.next((f) => f.type === "presence" && f.member.user === "mover");
  const before = watcher.frames.filter((f) => f.type === "presence").length;
  const started = Date.now();
  for (let i = 1; i <= 60; i++) {
    cursor.send({ type: "presence", id: `p${i}`, meta: { name: "Mover", x: i } });
    await new Promise((r) => setTimeout(r, 16)); // the loop's own pace: 60 updates a second
  }
  await cursor.next((f) => f.type === "ack" && f.id === "p60");
  const last = await watcher.next((f) => f.type === "presence" && f.member.meta?.x === 60, 5_000);
  const elapsed = (Date.now() - started) / 1000;
  const frames = watcher.frames.filter((f) => f.type === "presence").length - before;
  assert.ok(frames <= 10 + 5 * elapsed + 1, `${frames} presence frames in ${elapsed.toFixed(1)} s for 60 updates`);
  assert.equal(last.event, "update");
  assert.deepEqual(last.member.meta, { name: "Mover", x: 60 });
  const later = await Client.connect(edge, room, { cid: "l", user: "latecomer" });
  assert.deepEqual(later.welcome.members.find((m) => m.user === "mover").meta, { name: "Mover", x: 60 }, "the welcome shows it");
  await Promise.all([watcher, cursor, later].map((c) => c.close()));
});

test("HTTP history pages backwards with before=, and answers pages on allowed origins (CORS, preflight)", async () => {
  const room = roomName("http-history");
  await fill(room, 6);
  const key = token("reader", { [room]: ALL_RIGHTS });
  const get = (query, origin) =>
    fetch(`${edge.url}/rooms/${room}/history?${query}`, { headers: { authorization: `Bearer ${key}`, ...(origin ? { origin } : {}) } });
  const page = await (await get("before=5&limit=2")).json();
  assert.deepEqual([page.messages.map((m) => m.seq), page.more], [[3, 4], true]);
  const first = await (await get("before=2&limit=2")).json();
  assert.deepEqual([first.messages.map((m) => m.seq), first.more], [[1], false]);

  const allowed = await get("since=0", ORIGIN);
  assert.equal(allowed.headers.get("access-control-allow-origin"), ORIGIN);
  const foreign = await get("since=0", "https://evil.example");
  assert.equal(foreign.headers.get("access-control-allow-origin"), null, "no CORS for other origins");
  const refused = await fetch(`${edge.url}/rooms/${room}/history`, { headers: { authorization: "Bearer nope", origin: ORIGIN } });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get("access-control-allow-origin"), ORIGIN, "the page can read why");

  const preflight = (origin) =>
    fetch(`${edge.url}/rooms/${room}/history`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
  const ok = await preflight(ORIGIN);
  assert.equal(ok.status, 204);
  assert.equal(ok.headers.get("access-control-allow-origin"), ORIGIN);
  assert.match(ok.headers.get("access-control-allow-headers") ?? "", /authorization/i);
  assert.equal((await preflight("https://evil.example")).status, 403);
  const publishPreflight = await fetch(`${edge.url}/rooms/${room}/messages`, {
    method: "OPTIONS",
    headers: { origin: ORIGIN, authorization: `Bearer ${apiKey()}` },
  });
  assert.equal(publishPreflight.status, 405, "only history is offered to pages");
});
