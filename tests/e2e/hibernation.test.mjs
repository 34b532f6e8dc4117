// Hibernation: with only heartbeats flowing, local workerd evicts the room's object after about
// 10 s idle (hibernatable sockets stay open). Pings are answered by the runtime without waking
// it, and after the next wake the room is rebuilt from the live sockets: members, seq and epoch
// intact, fanout and presence working.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, Client, roomName, startEdge } from "../harness.mjs";

let edge;
before(async () => { edge = await startEdge(); });
after(async () => { await edge?.stop(); });

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
  assert.deepEqual(carol.welcome.members.map((m) => [m.user, m.connections]), [["alice", 1], ["bob", 1], ["carol", 1]]);
  await carol.publish("m2", "after waking");
  for (const c of [alice, bob]) assert.equal((await c.next((f) => f.type === "message" && f.seq === 2)).data, "after waking");
  await bob.close();
  // a socket from before the sleep still produces presence events
  const update = await alice.next((f) => f.type === "presence" && f.member.user === "bob" && f.event === "update" && f.member.connections === 0);
  assert.equal(update.member.user, "bob");
  await Promise.all([alice, carol].map((c) => c.close()));
});
