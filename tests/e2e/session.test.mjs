// Sessions: one socket per tab for any number of rooms (GET /session/ws), against real workerd.
// Each device gets each stored message of every room it joined exactly once, in order, resumes
// per room after a crash, and leaves one room (kick, deletion, a refused join) without losing
// its socket or its other rooms.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { ALL_RIGHTS, api, Client, roomName, startEdge, tempDir, token, until } from "../harness.mjs";

/** A raw session socket: frames recorded, waited for by predicate, like the harness's Client. */
async function session(edge, user, patterns = { "*": ALL_RIGHTS }, query = {}) {
  // `patterns` null: no token in the subprotocol (a test gives its own in the query).
  const protocols = patterns ? ["roomcast.v1", `bearer.${token(user, patterns)}`] : ["roomcast.v1"];
  const qs = new URLSearchParams(query).toString();
  const ws = new WebSocket(`${edge.wsUrl}/session/ws${qs ? `?${qs}` : ""}`, protocols, { closeTimeout: 500 });
  const client = new Client(ws);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  client.hello = await client.next((f) => f.type === "session");
  client.join = async (room, extra = {}) => {
    client.send({ type: "join", room, ...extra });
    return client.next((f) => f.room === room && (f.type === "joined" || f.type === "left"));
  };
  client.inRoom = (room, type) => client.frames.filter((f) => f.room === room && (type === undefined || f.type === type));
  client.seqs = (room) => client.inRoom(room, "message").map((f) => f.seq);
  return client;
}

let edge;
before(async () => {
  edge = await startEdge();
});
after(async () => {
  await edge?.stop();
});

test("one socket carries 20 rooms; two devices of a user each get every message once", async () => {
  const rooms = Array.from({ length: 20 }, (_, i) => roomName(`s${i}`));
  const tab = await session(edge, "alice");
  const phone = await session(edge, "alice");
  for (const room of rooms) assert.equal((await tab.join(room)).type, "joined");
  for (const room of rooms.slice(0, 5)) assert.equal((await phone.join(room)).type, "joined");
  assert.equal(tab.hello.user, "alice");
  for (const [i, room] of rooms.entries()) {
    assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, [{ data: i }, { data: i + 100 }])).status, 200);
  }
  await until(() => rooms.every((r) => tab.seqs(r).length === 2), { what: "every room's messages on the tab" });
  await until(() => rooms.slice(0, 5).every((r) => phone.seqs(r).length === 2), { what: "the phone's rooms" });
  for (const room of rooms) assert.deepEqual(tab.seqs(room), [1, 2], room);
  for (const room of rooms.slice(5)) assert.deepEqual(phone.seqs(room), [], "the phone did not join it");
  // The room counts each device as a connection of one member.
  const presence = await api(edge, "GET", `/rooms/${rooms[0]}/presence`);
  assert.deepEqual(
    presence.json.members.map((m) => [m.user, m.connections]),
    [["alice", 2]],
  );
  // A publish through the session is acknowledged to the device that sent it and reaches both.
  tab.send({ type: "publish", room: rooms[0], id: "p1", data: "hi" });
  const ack = await tab.next((f) => f.type === "ack" && f.room === rooms[0] && f.id === "p1");
  assert.equal(ack.seq, 3);
  await phone.next((f) => f.type === "message" && f.room === rooms[0] && f.seq === 3);
  assert.equal(phone.inRoom(rooms[0], "ack").length, 0, "acks go to the publishing device only");
  await Promise.all([tab.close(), phone.close()]);
});

test("sessions and direct sockets share a room: messages, presence and broadcasts both ways", async () => {
  const room = roomName("mixed");
  const direct = await Client.connect(edge, room, { user: "bob", cid: "bob1" });
  const alice = await session(edge, "alice");
  const joined = await alice.join(room);
  assert.deepEqual(joined.members.map((m) => m.user).sort(), ["alice", "bob"]);
  await direct.next((f) => f.type === "presence" && f.event === "join" && f.member.user === "alice");
  alice.send({ type: "publish", room, id: "a1", data: "from the session" });
  const msg = await direct.next((f) => f.type === "message" && f.data === "from the session");
  assert.equal(msg.user, "alice");
  await direct.publish("b1", "from the socket");
  await alice.next((f) => f.type === "message" && f.room === room && f.data === "from the socket");
  direct.send({ type: "broadcast", data: { cursor: 1 } });
  const b = await alice.next((f) => f.type === "broadcast" && f.room === room);
  assert.deepEqual(b.data, { cursor: 1 });
  await alice.close();
  const left = await direct.next((f) => f.type === "presence" && f.event === "leave" && f.member.user === "alice", 20_000);
  assert.equal(left.member.user, "alice");
  await direct.close();
});

test("rights per room: patterns, user-limited rooms, and frames for rooms not joined", async () => {
  const carol = await session(edge, "carol", { "chat:*": ALL_RIGHTS, "dm~*": ALL_RIGHTS });
  const secret = await carol.join(roomName("secret"));
  assert.deepEqual([secret.type, secret.code], ["left", 4403]);
  const theirs = await carol.join("dm~alice,bob");
  assert.deepEqual([theirs.type, theirs.code], ["left", 4403], "a user-limited room refuses a user it does not list");
  const dm = `dm~bob,carol`;
  assert.equal((await carol.join(dm)).type, "joined");
  // A frame naming a room this socket has not joined never reaches that room.
  const other = roomName("chat-other");
  carol.send({ type: "publish", room: other, id: "x", data: 1 });
  const err = await carol.next((f) => f.type === "error" && f.room === other);
  assert.equal(err.code, "bad_frame");
  const stats = await api(edge, "GET", `/rooms/${other}/stats`);
  assert.equal(stats.json.seq, 0, "nothing was published there");
  await carol.close();
  // No token, no session; a bad one neither.
  const noToken = new WebSocket(`${edge.wsUrl}/session/ws`);
  const status = await new Promise((resolve) => noToken.once("unexpected-response", (_req, res) => resolve(res.statusCode)));
  assert.equal(status, 401);
  await assert.rejects(session(edge, "carol", null, { token: "not.a.token" }), /upgrade refused: 401/);
});

test("kick and deletion leave one room; the socket and the other rooms stay", async () => {
  const [r1, r2] = [roomName("kick"), roomName("keep")];
  const s = await session(edge, "dave");
  await s.join(r1);
  await s.join(r2);
  assert.equal((await api(edge, "POST", `/rooms/${r1}/kick`, { user: "dave", reason: "spam" })).status, 200);
  const left = await s.next((f) => f.type === "left" && f.room === r1);
  assert.deepEqual([left.code, left.reason], [4411, "spam"]);
  await api(edge, "POST", `/rooms/${r2}/messages`, { data: "still here" });
  await s.next((f) => f.type === "message" && f.room === r2 && f.data === "still here");
  assert.equal((await api(edge, "DELETE", `/rooms/${r2}/history`)).status, 200);
  const reset = await s.next((f) => f.type === "left" && f.room === r2);
  assert.equal(reset.code, 4013);
  // Rejoining after the reset works on the same socket.
  assert.equal((await s.join(r2)).type, "joined");
  await s.close();
});

test("read positions reach the user's other devices and never move back", async () => {
  const room = roomName("reads");
  const a = await session(edge, "erin");
  const b = await session(edge, "erin");
  // A read position stands on messages the session has: the room holds 10.
  for (let i = 0; i < 10; i++) assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { data: i })).status, 200);
  assert.equal((await a.join(room)).seq, 10);
  a.send({ type: "mark_read", room, seq: 7 });
  const seen = await b.next((f) => f.type === "read_position" && f.room === room);
  assert.equal(seen.seq, 7);
  a.send({ type: "mark_read", room, seq: 3 });
  a.send({ type: "mark_read", room, seq: 9 });
  await b.next((f) => f.type === "read_position" && f.room === room && f.seq === 9);
  assert.deepEqual(
    b.frames.filter((f) => f.type === "read_position").map((f) => f.seq),
    [7, 9],
  );
  const c = await session(edge, "erin");
  await c.next((f) => f.type === "read_position" && f.room === room && f.seq === 9);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test("a device cannot flood rooms by leaving and joining: the session limits its frames", async () => {
  const room = roomName("flood");
  const s = await session(edge, "mallory");
  assert.equal((await s.join(room)).type, "joined");
  // Each join opens a new connection in the room, whose own publish limit starts full: without
  // the session's budget, 400 rejoins would store 400 messages at once.
  const started = Date.now();
  for (let i = 0; i < 400; i++) {
    s.send({ type: "leave", room });
    s.send({ type: "join", room });
    s.send({ type: "publish", room, id: `m${i}`, data: i });
  }
  const closed = await s.closed;
  const seconds = (Date.now() - started) / 1000;
  assert.equal(closed.code, 4029, "refused frames past the strikes close the socket");
  assert.ok(s.frames.some((f) => f.type === "error" && f.code === "rate_limited"));
  const stats = await api(edge, "GET", `/rooms/${room}/stats`);
  // A cycle is 3 frames from a budget of 300 (RATE_MESSAGES_BURST + 200 rooms) refilled at
  // 150 a second (RATE_MESSAGES_PER_SEC + BROADCAST_RATE_PER_SEC).
  const most = Math.ceil((300 + 150 * seconds) / 3) + 1;
  assert.ok(stats.json.seq <= most && stats.json.seq < 400, `${stats.json.seq} messages stored in ${seconds} s`);
});

test("one user in 60 rooms on 2 tabs uses 2 upgrades", async () => {
  const rooms = Array.from({ length: 60 }, (_, i) => roomName(`many${i}`));
  // The rooms exist (a user may create 20 a minute: ROOM_CREATIONS_PER_USER).
  for (const room of rooms) assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { data: 0 })).status, 200);
  const tabs = [await session(edge, "frank"), await session(edge, "frank")];
  for (const tab of tabs) {
    for (const room of rooms) tab.send({ type: "join", room });
  }
  await until(() => tabs.every((t) => rooms.every((r) => t.inRoom(r, "joined").length === 1)), {
    what: "every room joined on both tabs",
    timeoutMs: 60_000,
  });
  assert.ok(tabs.every((t) => t.frames.every((f) => f.type !== "left")));
  await Promise.all(tabs.map((t) => t.close()));
});

test("each room resumes from the device's own point after the runtime is killed", async () => {
  const persistDir = tempDir("sessions");
  const rooms = [roomName("crash-a"), roomName("crash-b")];
  let local = await startEdge({ persistDir });
  const points = {};
  try {
    const s = await session(local, "gina");
    for (const room of rooms) {
      const j = await s.join(room);
      points[room] = { epoch: j.epoch };
      await api(local, "POST", `/rooms/${room}/messages`, [{ data: 1 }, { data: 2 }]);
    }
    await until(() => rooms.every((r) => s.seqs(r).length === 2), { what: "both rooms' messages" });
    for (const room of rooms) points[room].since = 2;
    // a read position, acknowledged by its echo, must outlive the crash
    s.send({ type: "mark_read", room: rooms[0], seq: 2 });
    await s.next((f) => f.type === "read_position" && f.room === rooms[0] && f.seq === 2);
  } finally {
    await local.stop("SIGKILL");
  }
  local = await startEdge({ persistDir });
  try {
    for (const room of rooms) await api(local, "POST", `/rooms/${room}/messages`, [{ data: 3 }, { data: 4 }]);
    const s = await session(local, "gina");
    const read = await s.next((f) => f.type === "read_position" && f.room === rooms[0]);
    assert.equal(read.seq, 2, "the read position survived the SIGKILL");
    for (const room of rooms) {
      const j = await s.join(room, points[room]);
      assert.equal(j.type, "joined");
    }
    await until(() => rooms.every((r) => s.seqs(r).length === 2), { what: "the missed messages" });
    for (const room of rooms) assert.deepEqual(s.seqs(room), [3, 4], room);
    await api(local, "POST", `/rooms/${rooms[0]}/messages`, { data: 5 });
    await s.next((f) => f.type === "message" && f.room === rooms[0] && f.seq === 5);
    assert.deepEqual(s.seqs(rooms[0]), [3, 4, 5]);
    await s.close();
  } finally {
    await local.stop();
  }
});

test("watch: a sidebar's rooms report their latest seq and unread count without being joined", async () => {
  const [a, b] = [roomName("side-a"), roomName("side-b")];
  await api(edge, "POST", `/rooms/${a}/messages`, [{ data: 1 }, { data: 2 }]);
  const tab = await session(edge, "hana");
  tab.send({ type: "watch", rooms: [a, b] });
  const first = await tab.next((f) => f.type === "watch" && f.room === a);
  assert.deepEqual([first.seq, first.unread], [2, 2]);
  tab.send({ type: "join", room: b });
  await tab.next((f) => f.type === "joined" && f.room === b);
  tab.send({ type: "mark_read", room: a, seq: 1 });
  await tab.next((f) => f.type === "read_position" && f.room === a);
  for (let i = 0; i < 10; i++) await api(edge, "POST", `/rooms/${a}/messages`, { data: i });
  const last = await tab.next((f) => f.type === "watch" && f.room === a && f.seq === 12, 15_000);
  assert.equal(last.unread, 11);
  assert.ok(tab.inRoom(a, "watch").length < 11, "coalesced, at most one a second");
  assert.deepEqual(tab.seqs(a), [], "watching is not joining");
  const presence = await api(edge, "GET", `/rooms/${a}/presence`);
  assert.deepEqual(presence.json.members, [], "a watcher is no member");
  await tab.close();
});
