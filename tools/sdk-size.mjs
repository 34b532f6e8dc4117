// The SDK's size as a page ships it, gzipped -9: the package file (`sdk/dist/index.js`: the wasm
// inlined, its JS host glue and the API), held to PAGE_BUDGET; and, with `--react`, an app that uses
// the React hooks (examples/react, built by Vite: React, ReactDOM, roomcast/react and the SDK). The
// parts are printed too: the wasm (sdk/pkg) and the host glue (sdk/js/host.js minified, the wasm left
// out). scripts/build-sdk.sh runs it and fails when the package file is over the budget; the package
// test holds the figures README.md and sdk/README.md state to the measured ones; the benchmark
// reports the parts beside the peers.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const esbuild = createRequire(join(ROOT, "package.json"))("esbuild");
const sized = (bytes) => ({ raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length });

/**
 * The most `dist/index.js` may weigh gzipped, the whole of what `import "roomcast"` loads. The
 * goal is 13 KiB (socket.io-client is 13.3 KiB gzipped, partysocket 4.1 KiB); the budget holds
 * today's figure (16,992 bytes, rounded up to the next 0.1 KiB) so the SDK only gets smaller
 * (sdk/README.md, Size, says where the bytes are and what each change took off).
 */
export const PAGE_BUDGET = 16.6 * 1024;
export const PAGE_GOAL = 13 * 1024;

/** The package file and its parts, as built by scripts/build-sdk.sh. */
export function sdkParts() {
  const glue = sized(
    esbuild.buildSync({
      entryPoints: [join(ROOT, "sdk", "js", "host.js")],
      bundle: true,
      minify: true,
      mangleProps: /^_/,
      reserveProps: /^(_resources|__proto__)$/,
      format: "esm",
      target: "es2022",
      write: false,
      logLevel: "error",
      external: ["*.txt"],
    }).outputFiles[0].contents,
  );
  const wasm = sized(readFileSync(join(ROOT, "sdk", "pkg", "roomcast_sdk.wasm")));
  const bundle = sized(readFileSync(join(ROOT, "sdk", "dist", "index.js")));
  // `total` (wasm + glue) is what the benchmark's older results report.
  return { wasm, glue, total: wasm.gzip + glue.gzip, bundle, budget: PAGE_BUDGET, goal: PAGE_GOAL };
}

/**
 * examples/react built by Vite for production against the built package (sdk/dist): its JS
 * assets, raw and gzipped, summed.
 */
export async function reactApp() {
  const { build } = await import(join(ROOT, "node_modules", "vite", "dist", "node", "index.js"));
  const outDir = mkdtempSync(join(tmpdir(), "roomcast-react-size-"));
  try {
    await build({
      root: join(ROOT, "examples", "react"),
      configFile: join(ROOT, "examples", "react", "vite.config.js"),
      logLevel: "error",
      resolve: {
        alias: [
          { find: /^roomcast$/, replacement: join(ROOT, "sdk", "dist", "index.js") },
          { find: /^roomcast\/react$/, replacement: join(ROOT, "sdk", "dist", "react.js") },
        ],
      },
      build: { outDir, emptyOutDir: true },
    });
    return jsAssets(join(outDir, "assets"));
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

/** The JS files of a built app's assets folder, each and summed. */
export function jsAssets(dir) {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".js"))
    .map((f) => ({ file: f, ...sized(readFileSync(join(dir, f))) }));
  return { files, raw: files.reduce((s, f) => s + f.raw, 0), gzip: files.reduce((s, f) => s + f.gzip, 0) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const s = sdkParts();
  const kb = (n) => `${(n / 1000).toFixed(1)} KB`;
  console.log(
    `sdk: dist/index.js (what a page loads: wasm inlined + glue + API) ${s.bundle.raw} bytes, ${s.bundle.gzip} gzipped`
      + ` (${kb(s.bundle.gzip)}; budget ${s.budget}, goal ${s.goal}); parts: wasm ${s.wasm.raw} bytes (${s.wasm.gzip} gzipped),`
      + ` host glue ${s.glue.raw} bytes (${s.glue.gzip} gzipped)`,
  );
  if (process.argv.includes("--react")) {
    const r = await reactApp();
    console.log(
      `sdk: examples/react built by Vite (React, ReactDOM, roomcast/react, roomcast) ${r.raw} bytes, ${r.gzip} gzipped (${kb(r.gzip)})`,
    );
  }
  if (s.bundle.gzip > s.budget) {
    console.error(`sdk: dist/index.js is ${s.bundle.gzip} bytes gzipped, over its budget of ${s.budget}`);
    process.exit(1);
  }
}

/**
 * The artifacts whose sizes README.md and sdk/README.md state, by a text their table row names
 * (the Worker's in README.md only: tests/unit/figures.test.mjs).
 */
export const DOCUMENTED = {
  bundle: "`sdk/dist/index.js`",
  wasm: "`sdk/pkg/roomcast_sdk.wasm`",
  glue: "`sdk/js/host.js`",
  react: "`examples/react`",
  worker: "`worker/build/index_bg.wasm`",
};

/**
 * The sizes a Markdown file states in its table rows `| <name …> | <raw> KB | <gzipped> KB |`, in
 * bytes (KB = 1,000 bytes), by DOCUMENTED key.
 */
export function documentedSizes(file) {
  const text = readFileSync(join(ROOT, file), "utf8");
  const out = {};
  for (const line of text.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length !== 5) continue;
    const key = Object.keys(DOCUMENTED).find((k) => cells[1].includes(DOCUMENTED[k]));
    const kb = (c) => (/^[\d.]+ KB$/.test(c) ? Math.round(parseFloat(c) * 1000) : undefined);
    if (key && kb(cells[2]) !== undefined && kb(cells[3]) !== undefined) out[key] = { raw: kb(cells[2]), gzip: kb(cells[3]) };
  }
  return out;
}
