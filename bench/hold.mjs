// Starts one system and keeps it up until stdin closes: for profiling (`perf record -p <pid>`)
// with the load generator run by hand. Prints {pid, url} as JSON.
import { SYSTEMS } from "./systems.mjs";

const system = SYSTEMS[process.argv[2]];
const server = await system.start();
console.log(JSON.stringify({ pid: server.pid, url: system.url(server), protocol: system.protocol }));
process.stdin.resume();
process.stdin.on("end", async () => {
  await server.stop();
  process.exit(0);
});
