// The SDK's size as issue #5 budgets it: the wasm and its JS glue (the host layer, sdk/js/host.js,
// with the wasm left out), each minified and gzipped -9, summed. scripts/build-sdk.sh prints it,
// the package test holds it to the budget, and the benchmark reports it beside the peers.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const esbuild = createRequire(join(ROOT, "package.json"))("esbuild");
const sized = (bytes) => ({ raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length });

/** 13 KiB: socket.io-client is 13.3 KiB gzipped, partysocket 4.1 KiB. */
export const SDK_BUDGET = 13 * 1024;

export function sdkParts() {
  const glue = esbuild.buildSync({
    entryPoints: [join(ROOT, "sdk", "js", "host.js")],
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    write: false,
    logLevel: "error",
    external: ["*.gz"],
  }).outputFiles[0].contents;
  const wasm = sized(readFileSync(join(ROOT, "sdk", "pkg", "roomcast_sdk.wasm")));
  const bundle = sized(readFileSync(join(ROOT, "sdk", "dist", "index.js")));
  return { wasm, glue: sized(glue), total: wasm.gzip + sized(glue).gzip, budget: SDK_BUDGET, bundle };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const s = sdkParts();
  console.log(
    `sdk: wasm ${s.wasm.raw} bytes (${s.wasm.gzip} gzipped); host glue ${s.glue.raw} bytes (${s.glue.gzip} gzipped);`
      + ` wasm + glue ${s.total} of ${s.budget} bytes gzipped; dist/index.js (wasm inlined + glue + API)`
      + ` ${s.bundle.raw} bytes, ${s.bundle.gzip} bytes gzipped`,
  );
}
