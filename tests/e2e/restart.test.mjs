// Durability: what the room acknowledged survives a restart of the local runtime, including a
// crash (SIGKILL), when it comes back on the same persistence directory.
import assert from "node:assert/strict";
import { test } from "node:test";
import { api, Client, roomName, startEdge, tempDir } from "../harness.mjs";

test("history, seq and epoch survive a graceful restart and a crash", async () => {
  const persistDir = tempDir("persist");
  const room = roomName("durable");
  let edge = await startEdge({ persistDir });
  let epoch;
  try {
    const c = await Client.connect(edge, room, { cid: "c" });
    epoch = c.welcome.epoch;
    for (let i = 1; i <= 3; i++) assert.equal((await c.publish(`m${i}`, i)).seq, i);
    assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, [{ data: 4 }, { data: 5, id: "http-5" }])).status, 200);
    await c.close();
  } finally {
    await edge.stop("SIGTERM");
  }

  edge = await startEdge({ persistDir });
  try {
    const stats = await api(edge, "GET", `/rooms/${room}/stats`);
    assert.deepEqual([stats.json.epoch, stats.json.seq, stats.json.history], [epoch, 5, 5]);
    const resumed = await Client.connect(edge, room, { cid: "c", since: 2, epoch, echo: 1 });
    assert.deepEqual(resumed.welcome.resume, { status: "recovered", replayed: 3 });
    assert.equal(resumed.welcome.epoch, epoch);
    const replayed = await Promise.all([3, 4, 5].map((seq) => resumed.next((f) => f.type === "message" && f.seq === seq)));
    assert.deepEqual(
      replayed.map((m) => m.data),
      [3, 4, 5],
    );
    // retries of messages stored before the restart are still recognized
    const retry = await api(edge, "POST", `/rooms/${room}/messages`, { data: 5, id: "http-5" });
    assert.deepEqual(retry.json, { seq: 5, id: "http-5", duplicate: true });
    assert.equal((await resumed.publish("m6", 6)).seq, 6);
    await resumed.close();
  } finally {
    await edge.stop("SIGKILL"); // a crash: no chance to flush anything
  }

  edge = await startEdge({ persistDir });
  try {
    const stats = await api(edge, "GET", `/rooms/${room}/stats`);
    assert.deepEqual([stats.json.epoch, stats.json.seq], [epoch, 6], "the acknowledged seq 6 survived the crash");
    const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
    assert.deepEqual(
      history.json.messages.map((m) => m.data),
      [1, 2, 3, 4, 5, 6],
    );
    const c = await Client.connect(edge, room, { cid: "late" });
    assert.deepEqual([c.welcome.epoch, c.welcome.seq], [epoch, 6]);
    assert.equal((await c.publish("m7", 7)).seq, 7);
    await c.close();
  } finally {
    await edge.stop();
  }
});
