// A diagnostic: the runtime's CPU (user and system seconds per second) while N members sit idle
// in one room, per system, with no messages at all. Run from `npm run bench`'s environment:
//   node bench/idle-cpu.mjs A,B 1000 10      (systems, members, seconds measured)
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { descendants } from "./runtime.mjs";
import { SYSTEMS } from "./systems.mjs";

const [ids = "A,B", n = "1000", seconds = "10"] = process.argv.slice(2);
const TICKS_PER_SECOND = 100;

/** CPU seconds (user, system) of the process tree under `root`, from /proc. */
function treeCpu(root) {
  let user = 0,
    system = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
      user += Number(f[11]) / TICKS_PER_SECOND;
      system += Number(f[12]) / TICKS_PER_SECOND;
    } catch {
      /* exited */
    }
  }
  return { user, system };
}

const idle = (ms) => new Promise((r) => setTimeout(r, ms));

for (const id of ids.split(",")) {
  const system = SYSTEMS[id];
  const server = await system.start();
  try {
    const url = system.url(server).replace("{room}", "idle");
    const sockets = [];
    for (let i = 0; i < Number(n); i++) {
      const ws = new WebSocket(url.replace("{cid}", `m${i}`), { perMessageDeflate: false });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      sockets.push(ws);
    }
    await idle(3000); // let the joins settle
    const before = treeCpu(server.pid);
    await idle(Number(seconds) * 1000);
    const after = treeCpu(server.pid);
    const per = (k) => (((after[k] - before[k]) / Number(seconds)) * 1000).toFixed(1);
    console.log(`${id}: ${n} idle members: ${per("user")} ms user + ${per("system")} ms system CPU per second`);
    for (const ws of sockets) ws.terminate();
  } finally {
    await server.stop();
  }
}
