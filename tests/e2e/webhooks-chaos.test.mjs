// The short version of the webhook chaos run in `npm run chaos` (tests/chaos/webhooks.mjs): a
// receiver that fails at random, presence churn, SIGKILL restarts (one while a delivery is held),
// then every stored message, presence and occupancy change is checked against the receiver's log.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { faultReceiver, webhookSecret } from "../chaos/fault-receiver.mjs";
import { webhookChaos } from "../chaos/webhooks.mjs";
import { tempDir } from "../harness.mjs";

test("the fault receiver refuses a tampered body, a wrong key and an old timestamp", async () => {
  const secret = webhookSecret();
  const rx = await faultReceiver({ secret, logFile: `${tempDir("rx")}/log.jsonl`, failRate: 0, holdRate: 0, resetRate: 0, slowRate: 0 });
  // Signed here with node:crypto, as the contract says: v1,base64(HMAC-SHA256(key, id.ts.body)).
  const post = async (body, { key = Buffer.from(secret.slice(6), "base64"), ts = Math.floor(Date.now() / 1000), signed = body } = {}) => {
    const id = "batch_evt_0123456789abcdef_1_1";
    const sig = createHmac("sha256", key).update(`${id}.${ts}.${signed}`).digest("base64");
    const res = await fetch(rx.url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": `v1,${sig}` },
    });
    return res.status;
  };
  const body = JSON.stringify({ events: [{ id: "evt_0123456789abcdef_1", type: "room.occupied", room: "r", ts: Date.now() }] });
  try {
    assert.equal(await post(body), 204);
    assert.equal(await post(body.replace("occupied", "vacated"), { signed: body }), 400, "tampered body");
    assert.equal(await post(body, { key: Buffer.alloc(32, 7) }), 400, "another key");
    assert.equal(await post(body, { ts: Math.floor(Date.now() / 1000) - 600 }), 400, "10 min old");
    assert.deepEqual([rx.counts.verified, rx.counts.badSignature], [1, 3]);
  } finally {
    await rx.close();
  }
});

test("webhook chaos (short): every stored message and presence change reaches a failing receiver, in order, none invented", {
  timeout: 240_000,
}, async () => {
  const r = await webhookChaos({
    clients: 6,
    rooms: 2,
    churners: 4,
    messages: 400,
    restarts: 2,
    seed: 5,
    durationMs: 14_000,
    graceMs: 800,
    timeoutMs: 1500,
    maxFailuresInRow: 3,
    drainTimeoutMs: 60_000,
  });
  console.log(JSON.stringify({ ...r, problems: r.problems.slice(0, 10) }));
  assert.deepEqual(r.problems, []);
  assert.equal(r.failed, 0);
  assert.equal(r.restarts, 2);
  assert.ok(r.killedWhileHolding >= 1, "a restart came while the receiver held a delivery");
  assert.equal(r.acknowledged + r.refused, r.published);
  assert.equal(r.stored, r.acknowledged, "every publish stored once");
  assert.ok(r.requests.answered500 + r.requests.heldPastTimeout + r.requests.reset > 0, "faults were injected");
  assert.ok(r.presence.lefts > 0 && r.presence.longDepartures > 0, "departures happened and were reported");
  assert.equal(r.verifier, "standardwebhooks");
});
