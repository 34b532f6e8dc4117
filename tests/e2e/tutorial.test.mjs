// The README tutorial ("Your own app in five steps") run as a new user runs it: every
// block of that section, in order, as written, from a temporary folder outside the clone, against
// a local edge, with two Chromium windows whose users type display names with a space and an
// accent at the page's prompt. What stands in for the user, and nothing else:
// - `npm run dev` (step 1): the test's own edge (tests/harness.mjs runs the same `wrangler dev`
//   with the demo assets as scripts/dev.sh) on a free port, so every `127.0.0.1:8787` of the
//   section becomes that port, as the tutorial says to do for another `PORT`;
// - the backend's port 3000 becomes a free port, in server.mjs and in the page;
// - `cd ..  # or any folder of yours` goes to a fresh temporary folder;
// - "open it in two windows": two Chromium pages, each answering the prompt.
// The npm commands reach the registry as a user's do (`npm install` of the SDK folder only links
// it; `npx --yes vite@…` may download Vite once into npm's cache); nothing else uses the network.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { launchChromium } from "../browser.mjs";
import { freePort, ROOT, startEdge, tempDir, until } from "../harness.mjs";

const NAMES = ["Zoë Ann", "Mary Ann"];
let edge, browser, home;
const children = [];

before(async () => {
  [edge, browser] = await Promise.all([startEdge(), launchChromium()]);
  home = tempDir("tutorial");
});
after(async () => {
  // each in its own process group: npx's Vite and node's children go with it
  for (const c of children) {
    try {
      process.kill(-c.pid, "SIGTERM");
    } catch {
      /* already gone */
    }
  }
  await Promise.all([edge?.stop(), browser?.close()]);
  if (home) rmSync(home, { recursive: true, force: true });
});

/** The tutorial's blocks in order: `{ lang, text }`. */
function tutorialBlocks() {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const from = readme.indexOf("## Your own app in five steps");
  const to = readme.indexOf("### 5. Deploy", from);
  assert.ok(from >= 0 && to > from, "README.md has the tutorial section");
  return [...readme.slice(from, to).matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], text: m[2] }));
}

/** An environment as a user's shell has it: none of npm's own variables from a test run under npm. */
function userEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")));
}

/** Runs `script` with bash (errexit), in `cwd`; its stdout. */
function sh(script, cwd) {
  return execFileSync("bash", ["-euo", "pipefail", "-c", script], { cwd, env: userEnv(), encoding: "utf8", timeout: 120_000 });
}

/** Starts a long-running command of the tutorial; its output so far in `out()`. */
function background(command, cwd) {
  const child = spawn("bash", ["-c", `exec ${command}`], { cwd, env: userEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true });
  children.push(child);
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  return { child, out: () => out };
}

test("the README tutorial, run as written from a folder outside the clone, with display names that have a space and an accent", async () => {
  const backendPort = await freePort();
  const edgeHost = `127.0.0.1:${edge.port}`;
  const localize = (text) => text.replaceAll("127.0.0.1:8787", edgeHost);
  const blocks = tutorialBlocks();
  assert.deepEqual(
    blocks.map((b) => b.lang),
    ["sh", "sh", "js", "sh", "html", "sh", "js", "sh", "sh"],
    "the tutorial's blocks changed: teach this test the new ones",
  );
  const [dev, setup, serverJs, runServer, html, serve, publishJs, runPublish, curl] = blocks;

  // 1. The edge: `npm run dev` in the clone; wrangler says where it serves.
  assert.equal(dev.text, "npm run dev\n");
  assert.match(edge.log, new RegExp(`Ready on http://${edgeHost.replaceAll(".", "\\.")}`));

  // 2. From the clone to a folder of the user's: the clone's path comes from the clone.
  const anywhere = /^cd \.\. +# or any folder of yours.*$/m;
  assert.match(setup.text, anywhere);
  sh(setup.text.replace(anywhere, `cd ${JSON.stringify(home)}`), ROOT);
  const backend = join(home, "my-backend");
  const app = join(home, "my-app");
  assert.equal(readFileSync(join(app, "roomcast.js"), "utf8"), readFileSync(join(ROOT, "sdk", "dist", "index.js"), "utf8"));
  assert.match(readFileSync(join(backend, ".env"), "utf8"), /^ROOMCAST_SECRET=/m);

  const firstLine = (b) => b.text.split("\n")[0];
  assert.equal(firstLine(serverJs), "// my-backend/server.mjs");
  const serverCode = serverJs.text.replace(".listen(3000)", `.listen(${backendPort})`);
  assert.notEqual(serverCode, serverJs.text, "the tutorial's server listens on 3000");
  writeFileSync(join(backend, "server.mjs"), serverCode);
  assert.equal(runServer.text, "node --env-file=.env server.mjs\n");
  const server = background(runServer.text.trim(), backend);
  const minted = await until(
    () => fetch(`http://127.0.0.1:${backendPort}/?user=u-1&name=${encodeURIComponent(NAMES[0])}`).catch(() => null),
    {
      what: `the tutorial's server (${server.out()})`,
      timeoutMs: 20_000,
    },
  );
  assert.equal(minted.status, 200, await minted.clone().text());
  const claims = JSON.parse(Buffer.from((await minted.text()).split(".")[1], "base64url").toString());
  assert.deepEqual([claims.sub, claims.meta], ["u-1", { name: NAMES[0] }], "the name is meta; the id is the user");
  const refused = await fetch(`http://127.0.0.1:${backendPort}/?user=${encodeURIComponent("not an id")}`);
  assert.equal(refused.status, 400, "a user id the edge would refuse is the backend's 400");

  // 3. The page, served by the pinned Vite with no prompt, in two windows.
  const page = localize(html.text).replaceAll("127.0.0.1:3000", `127.0.0.1:${backendPort}`);
  assert.notEqual(page, html.text);
  assert.ok(!page.includes(":3000") && !page.includes(":8787"), "every address of the page was pointed at the test's servers");
  writeFileSync(join(app, "index.html"), page);
  assert.match(serve.text, /^npx --yes vite@\d+\.\d+\.\d+ my-app\n$/);
  const pinned = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).devDependencies.vite;
  assert.equal(serve.text.match(/vite@(\S+)/)[1], pinned, "the tutorial's Vite is the version the project pins");
  const vite = background(serve.text.trim(), home);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: Vite colours its banner
  const plain = () => vite.out().replace(/\x1b\[[0-9;]*m/g, "");
  const address = await until(() => plain().match(/Local:\s+(http:\/\/\S+)/)?.[1], {
    what: `Vite's address (${plain()})`,
    timeoutMs: 90_000,
  });
  const windows = [];
  for (const name of NAMES) {
    const w = await browser.newPage();
    w.on("dialog", (d) => d.accept(name));
    await w.goto(address);
    windows.push(w);
  }
  for (const w of windows) {
    await w.waitForFunction(() => document.title === "open");
    await w.waitForFunction((names) => names.every((n) => document.getElementById("here").textContent.includes(n)), NAMES, {
      timeout: 10_000,
    });
  }
  await windows[0].fill("#text", "milk");
  await windows[0].click("button");
  const items = (w) => w.evaluate(() => [...document.querySelectorAll("#items li")].map((li) => li.textContent));
  for (const w of windows) await w.waitForFunction(() => document.querySelectorAll("#items li").length === 1);
  for (const w of windows) assert.deepEqual(await items(w), [`milk (${NAMES[0]})`]);

  // 4. Publish from the backend, twice: stored once.
  assert.equal(firstLine(publishJs), "// my-backend/publish.mjs");
  const publishCode = localize(publishJs.text);
  assert.notEqual(publishCode, publishJs.text);
  writeFileSync(join(backend, "publish.mjs"), publishCode);
  assert.equal(runPublish.text, "node --env-file=.env publish.mjs\n");
  assert.equal(sh(runPublish.text, backend), "seq 2\n");
  assert.equal(sh(runPublish.text, backend), "seq 2 (already published: not stored again)\n");
  // without the key, createClient says so at once
  const noKey = (() => {
    try {
      sh("node publish.mjs 2>&1", backend);
      return "";
    } catch (e) {
      return e.stdout;
    }
  })();
  assert.match(noKey, /TypeError: createClient: apiKey is required \(ROOMCAST_API_KEY\)/);
  // the same publish with curl, from the clone: the same id, so the same seq, not stored again
  const answer = JSON.parse(sh(localize(curl.text), ROOT));
  assert.equal(answer.seq, 2);
  assert.equal(answer.duplicate, true);
  const expected = [`milk (${NAMES[0]})`, "added by the backend (the backend)"];
  for (const w of windows) await w.waitForFunction(() => document.querySelectorAll("#items li").length >= 2);
  for (const w of windows) assert.deepEqual(await items(w), expected);
  // a reload shows them again (rewind), once each
  await windows[1].reload();
  await windows[1].waitForFunction(() => document.title === "open" && document.querySelectorAll("#items li").length >= 2);
  assert.deepEqual(await items(windows[1]), expected);
  for (const w of windows) await w.close();
});

// What `npm run --silent where` prints: the clone's path, or nothing when the tutorial could not
// use it (the check itself: tools/where.mjs, `missing`).
test("npm run where: the clone's absolute path; nothing on stdout, and what to run, when the setup has not run", async () => {
  assert.equal(sh("npm run --silent where", ROOT), `${ROOT}\n`);
  const { missing } = await import("../../tools/where.mjs");
  const empty = tempDir("where");
  try {
    assert.deepEqual(missing(ROOT), []);
    const problems = missing(empty);
    assert.equal(problems.length, 3, problems.join("\n"));
    assert.match(problems.join("\n"), /no ROOMCAST_SECRET: run `npm run setup`/);
    assert.match(problems.join("\n"), /the SDK is not built: run `npm run build:sdk`/);
    mkdirSync(join(empty, "sdk", "dist"), { recursive: true });
    writeFileSync(join(empty, "sdk", "dist", "index.js"), "");
    writeFileSync(join(empty, ".dev.vars"), 'ROOMCAST_SECRET=""\nROOMCAST_API_KEY="k"\n');
    assert.deepEqual(
      missing(empty).map((p) => p.replaceAll(empty, "<clone>")),
      ["<clone>/.dev.vars has no ROOMCAST_SECRET: run `npm run setup` (or `npm run dev`) in <clone>"],
      "an empty secret is missing",
    );
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
