// Hibernation: with only heartbeats flowing, local workerd evicts the room's object after about
// 10 s idle (hibernatable sockets stay open). Pings are answered by the runtime without waking
// it, and after the next wake the room is rebuilt from the live sockets: members, seq and epoch
// intact, fanout and presence working.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, Client, roomName, startEdge, until } from "../harness.mjs";

let edge;
before(async () => {
  edge = await startEdge();
});
after(async () => {
  await edge?.stop();
});

test("heartbeats do not wake a hibernated room, and it wakes up whole", { timeout: 60_000 }, async () => {
  const room = roomName("hibernate");
  const alice = await Client.connect(edge, room, { cid: "a", user: "alice" }, { pingEveryMs: 500 });
  const bob = await Client.connect(edge, room, { cid: "b", user: "bob" }, { pingEveryMs: 500 });
  await alice.publish("m1", "before sleeping");
  const before = (await api(edge, "GET", `/rooms/${room}/stats`)).json;
  const pongsBefore = alice.frames.filter((f) => f.type === "pong").length;

  // Idle but for pings. The object's eviction cannot be observed without waking it, so this
  // waits out local workerd's idle timeout (10 s) rather than polling the room.
  await new Promise((r) => setTimeout(r, 13_000));
  const pongsWhileIdle = alice.frames.filter((f) => f.type === "pong").length - pongsBefore;
  assert.ok(pongsWhileIdle >= 20, `pings answered while idle: ${pongsWhileIdle}`);

  const afterIdle = (await api(edge, "GET", `/rooms/${room}/stats`)).json;
  assert.ok(afterIdle.countersSince > before.countersSince, "the object was evicted and started again: pings did not keep it awake");
  assert.deepEqual(
    [afterIdle.epoch, afterIdle.seq, afterIdle.connections, afterIdle.users],
    [before.epoch, 1, 2, 2],
    "seq, epoch and members rebuilt from the live sockets",
  );
  const carol = await Client.connect(edge, room, { cid: "c", user: "carol" });
  assert.deepEqual(
    carol.welcome.members.map((m) => [m.user, m.connections]),
    [
      ["alice", 1],
      ["bob", 1],
      ["carol", 1],
    ],
  );
  await carol.publish("m2", "after waking");
  for (const c of [alice, bob]) assert.equal((await c.next((f) => f.type === "message" && f.seq === 2)).data, "after waking");
  await bob.close();
  // a socket from before the sleep still produces presence events
  const update = await alice.next(
    (f) => f.type === "presence" && f.member.user === "bob" && f.event === "update" && f.member.connections === 0,
  );
  assert.equal(update.member.user, "bob");
  await Promise.all([alice, carol].map((c) => c.close()));
});

test("a silent connection is closed with 4001 in time although the room hibernates between sweeps; a talking one stays", {
  timeout: 90_000,
}, async () => {
  // A 24 s timeout sweeps every 12 s, longer than local workerd keeps an idle object (about
  // 10 s): the room is evicted between sweeps, and only the alarm can bring the sweep back.
  const timeout = 24_000;
  const sleepy = await startEdge({ vars: { HEARTBEAT_TIMEOUT_MS: timeout, PRESENCE_GRACE_MS: 1 } });
  try {
    const room = roomName("sweep");
    const silent = await Client.connect(sleepy, room, { cid: "s", user: "silent" });
    const openedAt = Date.now();
    // The talker publishes every 11 s (so the room is evicted between its frames too) and never
    // pings: frames are signs of life, and the room must remember them across its wakes.
    const talker = await Client.connect(sleepy, room, { cid: "t", user: "talker" });
    const first = (await api(sleepy, "GET", `/rooms/${room}/stats`)).json;
    let n = 0;
    const talk = setInterval(() => talker.publish(`t${++n}`, "still here").catch(() => {}), 11_000);
    try {
      const { code } = await silent.closed;
      const after = Date.now() - openedAt;
      assert.equal(code, 4001, "heartbeat timeout");
      assert.ok(after > timeout - 1_000 && after <= timeout * 1.5 + 3_000, `closed ${after} ms after its last sign of life`);
      // past 1.5 timeouts the talker is still open, and the room really was evicted meanwhile
      await until(() => Date.now() - openedAt > timeout * 1.5 + 2_000, { timeoutMs: 60_000, what: "1.5 timeouts" });
      assert.equal(talker.ws.readyState, 1, "the talker stays open");
      const later = (await api(sleepy, "GET", `/rooms/${room}/stats`)).json;
      assert.ok(later.countersSince > first.countersSince, "the room hibernated in between");
      assert.equal(later.connections, 1);
      const members = (await api(sleepy, "GET", `/rooms/${room}/presence`)).json.members.map((m) => m.user);
      assert.deepEqual(members, ["talker"], "no ghost member");
    } finally {
      clearInterval(talk);
    }
    await talker.close();
  } finally {
    await sleepy.stop();
  }
});
