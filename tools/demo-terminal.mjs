#!/usr/bin/env node
// `npm run demo:terminal [-- --room demo:term] [-- --shell]`: the local edge (as `npm run dev`)
// and a shared terminal in it, `roomcast terminal ROOM -- top` (`--shell`: bash, which anyone
// holding the input right can then use as you), with a token minted from the local secret. Open
// http://127.0.0.1:8787/terminal.html and tick "type" to type into it.
import { execFileSync, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { devVar, mintToken } from "./token.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const room = args.includes("--room") ? args[args.indexOf("--room") + 1] : "demo:term";
const command = args.includes("--shell") ? ["bash"] : ["top"];
const url = "http://127.0.0.1:8787";

execFileSync("cargo", ["build", "--quiet", "-p", "roomcast-cli"], { cwd: ROOT, stdio: "inherit" });
const edge = spawn("bash", [join(ROOT, "scripts", "dev.sh")], { cwd: ROOT, stdio: "inherit" });
for (let i = 0; ; i++) {
  if (
    await fetch(`${url}/`).then(
      (r) => r.ok,
      () => false,
    )
  )
    break;
  if (i > 600) throw new Error("the edge did not come up");
  await new Promise((r) => setTimeout(r, 200)); // poll while wrangler starts
}
const token = mintToken({ secret: devVar("ROOMCAST_SECRET"), user: "demo-agent", rooms: { [room]: ["subscribe", "publish", "presence"] } });
const agent = spawn(join(ROOT, "target", "debug", "roomcast"), ["terminal", room, "--", ...command], {
  env: { ...process.env, ROOMCAST_URL: url, ROOMCAST_TOKEN: token },
  stdio: ["ignore", "inherit", "inherit"],
});
console.log(`sharing \`${command.join(" ")}\` in ${room}: open ${url}/terminal.html?room=${encodeURIComponent(room)}`);
const stop = () => {
  agent.kill();
  edge.kill();
};
process.on("SIGINT", stop);
agent.on("exit", stop);
