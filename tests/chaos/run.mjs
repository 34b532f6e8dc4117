// `npm run chaos -- [--clients N] [--rooms N] [--messages N] [--restarts N] [--seed N] [--storm N]`:
// the restart storm at full size (defaults: 100 clients, 4 rooms, 10,000 messages, 10 restarts),
// then the reconnect storm (default 1,000 clients) with and without jitter.
// Prints the figures as JSON and exits non-zero if any acknowledged message was lost, duplicated
// or reordered.
import { reconnectStorm } from "./reconnect-storm.mjs";
import { restartStorm } from "./restart-storm.mjs";
import { stalls } from "./stalls.mjs";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = Number(process.argv[i + 1]);
const result = await restartStorm({ ...args, log: (line) => console.error(`chaos: ${line}`) });
console.log(JSON.stringify(result, null, 2));
console.error("chaos: stalls through a faulty proxy");
const stall = await stalls({ clients: 50, log: (line) => console.error(`chaos: ${line}`) });
console.log(JSON.stringify(stall, null, 2));
// The reconnect storm, with the SDK's jitter and without, for the spread.
const storm = args.storm ?? 1000;
for (const jitter of [true, false]) {
  console.error(`chaos: reconnect storm, ${storm} clients, jitter ${jitter ? "on" : "off"}`);
  console.log(JSON.stringify(await reconnectStorm({ clients: storm, jitter }), null, 2));
}
const stallFailures = Number(stall.blackhole.maxDetectMs > stall.blackhole.boundMs + 1000) + stall.delay.falseAlarms
  + stall.throttle.falseAlarms + Number(stall.slowConsumer.slowConsumerHadWhenFastDone >= 300);
const bad = result.lost + result.duplicated + result.reordered + result.disagreements + result.gaps + stallFailures;
console.log(`${result.acknowledged} passed, ${bad} failed`);
process.exit(bad === 0 ? 0 : 1);
