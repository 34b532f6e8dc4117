// Presence under churn: random connects and disconnects across users with several devices, and a
// runtime crash in the middle. Once the grace period has passed, the member list must equal the
// truth (users with open connections, with their counts): no ghosts, nobody missing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, Client, roomName, startEdge, tempDir, until } from "../harness.mjs";

const GRACE_MS = 300;
const persistDir = tempDir("churn");
let edge;
before(async () => {
  edge = await startEdge({ persistDir, vars: { PRESENCE_GRACE_MS: GRACE_MS } });
});
after(async () => {
  await edge?.stop();
});

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return a / 4294967296;
  };
}

test("after any churn and a crash, the member list equals the open connections", { timeout: 120_000 }, async () => {
  const room = roomName("churn");
  const random = rng(42);
  const open = []; // { user, client }
  let next = 0;
  const truth = () => {
    const counts = new Map();
    for (const { user } of open) counts.set(user, (counts.get(user) ?? 0) + 1);
    return [...counts].sort(([a], [b]) => a.localeCompare(b));
  };
  const members = async () => {
    const res = await api(edge, "GET", `/rooms/${room}/presence`);
    return res.json.members.filter((m) => m.connections > 0).map((m) => [m.user, m.connections]);
  };
  for (let step = 0; step < 60; step++) {
    if (step === 30) {
      // a crash: every socket dies with the runtime; nobody gets a close event in the room
      const port = edge.port;
      await edge.stop("SIGKILL");
      await Promise.all(open.map((o) => o.client.closed));
      open.length = 0;
      edge = await startEdge({ persistDir, vars: { PRESENCE_GRACE_MS: GRACE_MS }, port });
    }
    if (open.length === 0 || random() < 0.55) {
      const user = `u${Math.floor(random() * 6)}`;
      open.push({ user, client: await Client.connect(edge, room, { cid: `c${next++}`, user }) });
    } else {
      const [gone] = open.splice(Math.floor(random() * open.length), 1);
      await gone.client.close();
    }
  }
  // Connected users must match at once; users with no connection must be gone after the grace.
  await until(async () => JSON.stringify(await members()) === JSON.stringify(truth()), { what: "connected members to match" });
  await until(
    async () => {
      const res = await api(edge, "GET", `/rooms/${room}/presence`);
      return res.json.members.every((m) => m.connections > 0);
    },
    { timeoutMs: GRACE_MS * 20, what: "grace periods to end" },
  );
  const final = (await api(edge, "GET", `/rooms/${room}/presence`)).json.members.map((m) => [m.user, m.connections]);
  assert.deepEqual(final, truth(), "no ghosts, nobody missing");
  assert.ok(truth().length > 0, "the run ends with members to compare");
  await Promise.all(open.map((o) => o.client.close()));
});
