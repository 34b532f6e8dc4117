// The short version of `npm run chaos`: a restart storm small enough for every test run.
import assert from "node:assert/strict";
import { test } from "node:test";
import { restartStorm } from "../chaos/restart-storm.mjs";
import { sessionStorm } from "../chaos/session-storm.mjs";

test("restart storm (short): nothing acknowledged is lost, duplicated or reordered", { timeout: 300_000 }, async () => {
  const r = await restartStorm({ clients: 16, rooms: 2, messages: 600, restarts: 3, seed: 7 });
  assert.deepEqual(r.problems, []);
  assert.deepEqual([r.lost, r.duplicated, r.reordered, r.disagreements, r.gaps], [0, 0, 0, 0, 0]);
  assert.equal(r.restarts, 3);
  assert.equal(r.acknowledged + r.refused, r.published, "every publish was acknowledged or reported refused");
  assert.ok(r.acknowledged > 0);
  assert.ok(r.delivered >= r.acknowledged * (16 / 2), "each message reached every client of its room");
});

test("session storm (short): through sessions, every device gets every message of its rooms once, in order", {
  timeout: 300_000,
}, async () => {
  const r = await sessionStorm({ users: 4, devicesPerUser: 2, rooms: 4, roomsPerUser: 2, messages: 300, restarts: 2, seed: 3 });
  assert.deepEqual(r.problems, []);
  assert.deepEqual([r.lost, r.duplicated, r.reordered, r.disagreements, r.unstoredAcks, r.readsBack], [0, 0, 0, 0, 0, 0]);
  assert.equal(r.restarts, 2);
  assert.equal(r.acknowledged + r.refused, r.published, "every publish settled");
  assert.ok(r.acknowledged > 0 && r.reads > 0);
});
