// Sizes a user ships: the Worker each system deploys, and the browser client bundled the same
// way for every library (esbuild: bundle, minify, ESM, browser; then gzip -9).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ROOT } from "../tests/harness.mjs";
import { sdkParts } from "../tools/sdk-size.mjs";

const require = createRequire(join(ROOT, "package.json"));
const esbuild = require("esbuild");
const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;
const sized = (bytes) => ({ raw: bytes.length, gzip: gz(bytes) });

// What each client library's user imports; the bundle keeps what that import needs.
const CLIENTS = [
  { name: "roomcast", import: `import { connect } from ${JSON.stringify(join(ROOT, "sdk", "dist", "index.js"))}; globalThis.x = connect;` },
  { name: "partysocket", import: `import { PartySocket } from "partysocket"; globalThis.x = PartySocket;` },
  { name: "socket.io-client", import: `import { io } from "socket.io-client"; globalThis.x = io;` },
  { name: "centrifuge", import: `import { Centrifuge } from "centrifuge"; globalThis.x = Centrifuge;` },
];

function version(name) {
  if (name === "roomcast") return JSON.parse(readFileSync(join(ROOT, "sdk", "package.json"), "utf8")).version;
  return JSON.parse(readFileSync(join(ROOT, "bench", "node_modules", name, "package.json"), "utf8")).version;
}

export async function clientSizes() {
  const out = [];
  for (const c of CLIENTS) {
    const result = await esbuild.build({
      stdin: { contents: c.import, resolveDir: join(ROOT, "bench"), loader: "js" },
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      write: false,
      logLevel: "error",
    });
    out.push({ name: c.name, version: version(c.name), ...sized(result.outputFiles[0].contents) });
  }
  return out;
}

/** The wasm and its JS host glue alone (issue #5's budget is on these): tools/sdk-size.mjs. */
export { sdkParts };

/** The Worker bundles `wrangler deploy --dry-run` would upload, for A, B and C. */
export function workerSizes() {
  const wrangler = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const configs = {
    A: join(ROOT, "wrangler.toml"),
    B: join(ROOT, "bench/servers/js-do/wrangler.toml"),
    C: join(ROOT, "bench/servers/partyserver/wrangler.toml"),
  };
  const out = {};
  for (const [system, config] of Object.entries(configs)) {
    const outdir = mkdtempSync(join(tmpdir(), "roomcast-bench-size-"));
    execFileSync(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", outdir, "--config", config], {
      cwd: ROOT,
      stdio: "pipe",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
    });
    const files = readdirSync(outdir).filter((f) => /\.(js|mjs|wasm)$/.test(f) && statSync(join(outdir, f)).isFile());
    const parts = files.map((f) => ({ file: f, ...sized(readFileSync(join(outdir, f))) }));
    // The wasm's name carries a content hash; the part that matters is the kind.
    for (const p of parts) p.file = p.file.replace(/^[0-9a-f]{40}-/, "");
    out[system] = { files: parts, raw: parts.reduce((s, p) => s + p.raw, 0), gzip: parts.reduce((s, p) => s + p.gzip, 0) };
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync("/dev/stdout", `${JSON.stringify({ clients: await clientSizes(), sdk: sdkParts(), workers: workerSizes() }, null, 2)}\n`);
}
