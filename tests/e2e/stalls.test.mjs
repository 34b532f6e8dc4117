// Stalls (short version of the chaos suite's): black-holed and reset connections are noticed
// within the heartbeat bounds and replaced; added latency and a throttled reader are not taken
// for dead connections; a slow consumer does not hold back the others.
import assert from "node:assert/strict";
import { test } from "node:test";
import { stalls } from "../chaos/stalls.mjs";

test("faulty network: dead connections are replaced, slow ones are not, slow consumers do not block others", {
  timeout: 180_000,
}, async () => {
  const r = await stalls({ clients: 8, pingIntervalMs: 1000, pongTimeoutMs: 1000 });
  // ping interval + pong timeout, plus timer slack
  assert.ok(r.blackhole.maxDetectMs <= r.blackhole.boundMs + 1000, JSON.stringify(r.blackhole));
  assert.ok(r.reset.maxDetectMs <= r.reset.boundMs, JSON.stringify(r.reset));
  assert.equal(r.delay.falseAlarms, 0);
  assert.equal(r.throttle.falseAlarms, 0);
  assert.ok(
    r.slowConsumer.slowConsumerHadWhenFastDone < 300,
    `the fast clients finished while the slow one had ${r.slowConsumer.slowConsumerHadWhenFastDone} of 300`,
  );
});
