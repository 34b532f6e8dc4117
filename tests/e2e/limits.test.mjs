// The room with small limits: history retention, the frame limit, and the heartbeat sweep that
// closes sockets whose pings stopped.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, Client, roomName, startEdge, until } from "../harness.mjs";

const HEARTBEAT_TIMEOUT_MS = 1500;
let edge;
before(async () => {
  edge = await startEdge({
    // ROOMCAST_DEV_TOKENS off: as in a deployed config
    vars: { HISTORY_MAX_MESSAGES: 20, MAX_FRAME_BYTES: 1024, HEARTBEAT_TIMEOUT_MS, PRESENCE_GRACE_MS: 200, ROOMCAST_DEV_TOKENS: "0" },
  });
});
after(async () => {
  await edge?.stop();
});

const pinging = { pingEveryMs: 300 };

test("resume beyond retention is told 'not recovered'; within it, replayed", async () => {
  const room = roomName("retention");
  const reader = await Client.connect(edge, room, { cid: "r" }, pinging);
  const { epoch } = reader.welcome;
  await reader.close();
  const batch = Array.from({ length: 60 }, (_, i) => ({ data: i + 1 }));
  assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, batch)).status, 200);
  const stats = await api(edge, "GET", `/rooms/${room}/stats`);
  assert.equal(stats.json.seq, 60);
  assert.ok(stats.json.history <= 21 && stats.json.history >= 20, `history holds ${stats.json.history}`);

  const late = await Client.connect(edge, room, { cid: "r", since: 0, epoch }, pinging);
  assert.deepEqual(late.welcome.resume, { status: "not_recovered", reason: "retention", since: 0 });
  assert.equal(late.welcome.seq, 60);
  // the gap is explicit: nothing is replayed, the client refetches what history still has
  const oldest = stats.json.oldest;
  const page = await api(edge, "GET", `/rooms/${room}/history?since=${oldest - 1}&limit=100`);
  assert.deepEqual(
    page.json.messages.map((m) => m.seq),
    Array.from({ length: 61 - oldest }, (_, i) => oldest + i),
  );

  const recent = await Client.connect(edge, room, { cid: "r2", since: 55, epoch }, pinging);
  assert.deepEqual(recent.welcome.resume, { status: "recovered", replayed: 5 });
  await until(() => recent.messages().length === 5, { what: "replay" });
  assert.deepEqual(
    recent.messages().map((m) => m.data),
    [56, 57, 58, 59, 60],
  );
  assert.equal(late.messages().length, 0);
  await Promise.all([late, recent].map((c) => c.close()));
});

test("frames over MAX_FRAME_BYTES get too_large, and HTTP data over it gets 413", async () => {
  const room = roomName("framecap");
  const c = await Client.connect(edge, room, { cid: "c" }, pinging);
  c.raw(JSON.stringify({ type: "publish", id: "big", data: "x".repeat(1100) }));
  assert.equal((await c.next((f) => f.type === "error")).code, "too_large");
  assert.equal((await c.publish("small", "x".repeat(900))).seq, 1);
  const res = await api(edge, "POST", `/rooms/${room}/messages`, { data: "y".repeat(1100) });
  assert.equal(res.status, 413);
  assert.equal(res.json.error.code, "too_large");
  assert.equal((await api(edge, "GET", `/rooms/${room}/stats`)).json.seq, 1);
  await c.close();
});

test("the room closes a socket whose pings stopped, with 4001, and announces the leave", async () => {
  const room = roomName("sweep");
  const alive = await Client.connect(edge, room, { cid: "alive", user: "alive" }, pinging);
  const silent = await Client.connect(edge, room, { cid: "silent", user: "silent" });
  const opened = Date.now();
  const { code, reason } = await silent.closed;
  const after = Date.now() - opened;
  assert.equal(code, 4001);
  assert.equal(reason, "heartbeat timeout");
  assert.ok(after >= HEARTBEAT_TIMEOUT_MS, `closed after ${after} ms`);
  const leave = await alive.next((f) => f.type === "presence" && f.event === "leave" && f.member.user === "silent");
  assert.equal(leave.member.connections, 0);
  // the pinging socket is still served
  await alive.publish("still-here", 1);
  assert.equal(alive.ws.readyState, 1);
  await alive.close();
});

test("without the development flag there is no token endpoint", async () => {
  const res = await fetch(`${edge.url}/dev/token?user=x&room=y`);
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "not_found");
});
