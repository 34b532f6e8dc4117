// `npm run chaos -- [--clients N] [--rooms N] [--messages N] [--restarts N] [--seed N] [--storm N]
//   [--webhook-messages N] [--webhook-restarts N] [--only webhooks|sessions]`:
// the restart storm at full size (defaults: 100 clients, 4 rooms, 10,000 messages, 10 restarts),
// the stalls, the reconnect storm (default 1,000 clients) with and without jitter, then the
// webhook chaos run (default 5,000 messages, 5 restarts; tests/chaos/webhooks.mjs), then the
// session storm (24 devices of 8 users in 10 rooms through sessions, 3 restarts;
// tests/chaos/session-storm.mjs).
// Prints the figures as JSON and exits non-zero if any acknowledged message was lost, duplicated
// or reordered, or any webhook check failed.
import { reconnectStorm } from "./reconnect-storm.mjs";
import { restartStorm } from "./restart-storm.mjs";
import { sessionStorm } from "./session-storm.mjs";
import { stalls } from "./stalls.mjs";
import { webhookChaos } from "./webhooks.mjs";

const args = {};
let only;
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, "");
  if (name === "only") only = process.argv[i + 1];
  else args[name] = Number(process.argv[i + 1]);
}
const log = (line) => console.error(`chaos: ${line}`);
const webhooks = async () => {
  console.error("chaos: webhooks to a failing receiver, with restarts");
  const hooks = await webhookChaos({
    messages: args["webhook-messages"] ?? 5000,
    restarts: args["webhook-restarts"] ?? 5,
    seed: args.seed ?? 1,
    log,
  });
  console.log(JSON.stringify(hooks, null, 2));
  return hooks;
};
const sessions = async () => {
  console.error("chaos: session storm, 24 devices of 8 users in 10 rooms, 3 restarts");
  const s = await sessionStorm({
    users: 8,
    devicesPerUser: 3,
    rooms: 10,
    roomsPerUser: 4,
    messages: 3000,
    restarts: 3,
    seed: args.seed ?? 1,
    log,
  });
  console.log(JSON.stringify(s, null, 2));
  return s.lost + s.duplicated + s.reordered + s.disagreements + s.unstoredAcks + s.readsBack;
};
if (only === "sessions") {
  const bad = await sessions();
  process.exit(bad === 0 ? 0 : 1);
}
if (only === "webhooks") {
  const hooks = await webhooks();
  console.log(`${hooks.stored} passed, ${hooks.failed} failed`);
  process.exit(hooks.failed === 0 ? 0 : 1);
}
const result = await restartStorm({ ...args, log });
console.log(JSON.stringify(result, null, 2));
console.error("chaos: stalls through a faulty proxy");
const stall = await stalls({ clients: 50, log });
console.log(JSON.stringify(stall, null, 2));
// The reconnect storm, with the SDK's jitter and without, for the spread.
const storm = args.storm ?? 1000;
for (const jitter of [true, false]) {
  console.error(`chaos: reconnect storm, ${storm} clients, jitter ${jitter ? "on" : "off"}`);
  console.log(JSON.stringify(await reconnectStorm({ clients: storm, jitter }), null, 2));
}
const stallFailures =
  Number(stall.blackhole.maxDetectMs > stall.blackhole.boundMs + 1000)
  + stall.delay.falseAlarms
  + stall.throttle.falseAlarms
  + Number(stall.slowConsumer.slowConsumerHadWhenFastDone >= 300);
const hooks = await webhooks();
const sessionFailures = await sessions();
const bad =
  sessionFailures + result.lost + result.duplicated + result.reordered + result.disagreements + result.gaps + stallFailures + hooks.failed;
console.log(`${result.acknowledged + hooks.stored} passed, ${bad} failed`);
process.exit(bad === 0 ? 0 : 1);
