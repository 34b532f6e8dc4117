// What each deploy command would upload (wrangler deploy --dry-run, no account needed):
// `wrangler deploy` and the staging and production environments ship the Worker alone, each
// with the room binding and the upgrade limiters; only `npm run deploy:demo` (env demo) ships the
// demo pages, on a Worker of its own with the development-token switch. docs/DEPLOYING.md.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { ROOT, startEdge, tempDir } from "../harness.mjs";

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

function dryRun(args) {
  const outdir = tempDir("dry");
  const run = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir, ...args],
    {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
      encoding: "utf8",
    },
  );
  const output = run.stdout + run.stderr;
  assert.equal(run.status, 0, output);
  assert.match(run.stdout, /--dry-run: exiting now/);
  // The name of the Worker it would deploy, from the README wrangler writes beside the bundle.
  const name = readFileSync(join(outdir, "README.md"), "utf8").match(/for the worker "([^"]+)"/)?.[1];
  const files = readdirSync(outdir);
  assert.ok(files.includes("index.js") && files.some((f) => f.endsWith(".wasm")), files.join(","));
  return { output, stdout: run.stdout, name };
}

/** The bindings every deployed Worker needs: the rooms and the per-IP upgrade limiters. */
function assertWorkerBindings(stdout) {
  assert.match(stdout, /env\.ROOMS \(RoomObject\)\s+Durable Object/);
  assert.match(stdout, /env\.UPGRADES_PER_IP \(100 requests\/10s\)\s+Rate Limit/);
  assert.match(stdout, /env\.UNVERIFIED_UPGRADES_PER_IP \(100 requests\/10s\)\s+Rate Limit/);
}

const ASSETS = /Read \d+ files from the assets directory/;

test("wrangler deploy ships the Worker alone: no demo pages, no development tokens", () => {
  const { stdout, output, name } = dryRun([]);
  assert.equal(name, "roomcast");
  assertWorkerBindings(stdout);
  assert.doesNotMatch(output, ASSETS);
  assert.doesNotMatch(stdout, /ROOMCAST_DEV_TOKENS|ROOMCAST_SECRET|ROOMCAST_API_KEY/, "local secrets never go into a deploy");
});

for (const env of ["staging", "production"]) {
  test(`wrangler deploy --env ${env}: the Worker roomcast-${env}, with its bindings and without the demo`, () => {
    const { stdout, output, name } = dryRun(["--env", env]);
    assert.equal(name, `roomcast-${env}`);
    assertWorkerBindings(stdout);
    assert.doesNotMatch(output, ASSETS);
    assert.doesNotMatch(stdout, /ROOMCAST_DEV_TOKENS|ROOMCAST_SECRET|ROOMCAST_API_KEY/);
  });
}

test("npm run deploy:demo: the demo pages on the Worker roomcast-demo, which serves them development tokens", () => {
  // the pages load the SDK package file from demo/vendor, which build-sdk.sh writes
  assert.equal(pkg.scripts["deploy:demo"], "bash scripts/build-sdk.sh && wrangler deploy --env demo");
  const { stdout, output, name } = dryRun(["--env", "demo"]);
  assert.equal(name, "roomcast-demo");
  assertWorkerBindings(stdout);
  assert.match(output, /Read [1-9]\d* files from the assets directory \S*\/demo\n/);
  assert.match(stdout, /env\.ROOMCAST_DEV_TOKENS \("1"\)/);
  assert.match(stdout, /env\.DEV_TOKEN_HOSTS \("\*"\)/);
});

test("the demo pages work from an origin that is not loopback, as the demo Worker serves them", async () => {
  // /dev/token answers loopback origins and requests without an Origin header, sent to a loopback
  // host or one DEV_TOKEN_HOSTS names; a deployed demo's pages are on
  // https://roomcast-demo.<subdomain>.workers.dev, and their same-origin GET carries no Origin.
  // Here a made-up host name resolves to the local edge, treated as secure as https is, with the
  // demo environment's vars.
  const edge = await startEdge({ vars: { ROOMCAST_DEV_TOKENS: "1", DEV_TOKEN_HOSTS: "*" } });
  const origin = `http://demo.example:${edge.port}`;
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--no-first-run",
      "--host-resolver-rules=MAP demo.example 127.0.0.1",
      `--unsafely-treat-insecure-origin-as-secure=${origin}`,
    ],
  });
  try {
    const page = await browser.newPage();
    const tokens = [];
    page.on("response", async (r) => {
      if (r.url().includes("/dev/token")) tokens.push([(await r.request().allHeaders()).origin ?? null, r.status()]);
    });
    await page.goto(`${origin}/chat.html`);
    await page.fill("#name", "ada");
    await page.fill("#room", `chat:deployed-${process.pid}`);
    await page.click("#join button");
    await page.waitForSelector('#status[data-state="open"]');
    assert.deepEqual(tokens[0], [null, 200], "the page's token request carries no Origin and is answered");
  } finally {
    await browser.close();
    await edge.stop();
  }
});
