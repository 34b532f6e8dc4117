// The first vertical slice: routing, fanout to the other members of a room, isolation between
// rooms, room-name validation, the demo page in a real browser, and a deploy dry run.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { api, Client, ROOT, roomName, startEdge, tempDir } from "../harness.mjs";

let edge;
before(async () => {
  edge = await startEdge();
});
after(async () => {
  await edge?.stop();
});

test("three clients receive a message from a fourth, which does not get it back", async () => {
  const room = roomName("fan");
  const receivers = await Promise.all(["a", "b", "c"].map((cid) => Client.connect(edge, room, { cid, user: cid })));
  const sender = await Client.connect(edge, room, { cid: "d", user: "d" });
  const ack = await sender.publish("m1", { text: "hello" });
  assert.equal(ack.type, "ack");
  assert.equal(ack.seq, 1);
  for (const r of receivers) {
    const m = await r.next((f) => f.type === "message");
    assert.deepEqual([m.seq, m.from, m.user, m.data], [1, "d", "d", { text: "hello" }]);
  }
  // The room sends a publisher's copy before its ack, so an ack with no message before it
  // proves the sender was left out.
  assert.equal(sender.messages().length, 0);
  await Promise.all([...receivers, sender].map((c) => c.close()));
});

test("a client in another room receives nothing", async () => {
  const roomA = roomName("iso-a");
  const roomB = roomName("iso-b");
  const inA = await Client.connect(edge, roomA, { cid: "a" });
  const inB = await Client.connect(edge, roomB, { cid: "b" });
  const sender = await Client.connect(edge, roomA, { cid: "s" });
  await sender.publish("x", "for room A only");
  await inA.next((f) => f.type === "message");
  // A message published to B afterwards is the first B ever gets: seq 1 and alone.
  const res = await api(edge, "POST", `/rooms/${roomB}/messages`, { data: "for B" });
  assert.equal(res.status, 200);
  const m = await inB.next((f) => f.type === "message");
  assert.equal(m.seq, 1);
  assert.equal(m.data, "for B");
  assert.deepEqual(
    inB.messages().map((f) => f.data),
    ["for B"],
  );
  const stats = await api(edge, "GET", `/rooms/${roomB}/stats`);
  assert.equal(stats.json.seq, 1);
  await Promise.all([inA, inB, sender].map((c) => c.close()));
});

test("invalid room names are refused with 400 and a JSON error", async () => {
  for (const bad of ["bad%20name", "a".repeat(129), "%C3%A9t%C3%A9", "semi;colon"]) {
    const res = await fetch(`${edge.url}/rooms/${bad}/ws`);
    assert.equal(res.status, 400, bad);
    assert.match(res.headers.get("content-type"), /application\/json/);
    const body = await res.json();
    assert.equal(body.error.code, "bad_request");
    assert.match(body.error.message, /room name/);
  }
  const ok = await fetch(`${edge.url}/rooms/${"a".repeat(128)}/stats`);
  assert.equal(ok.status, 401, "a 128-byte name passes validation and reaches the API key check");
  const unknown = await fetch(`${edge.url}/nowhere`);
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, "not_found");
});

test("the page at / loads in Chromium and connects to its room", async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  try {
    const page = await browser.newPage();
    const res = await page.goto(`${edge.url}/`);
    assert.equal(res.status(), 200);
    assert.equal(await page.title(), "roomcast");
    await page.waitForFunction(() => document.getElementById("status").textContent === "open");
    await page.fill("#text", "from the browser");
    await page.click("button");
    await page.waitForFunction(() => document.getElementById("log").textContent.includes("from the browser"));
    const history = await api(edge, "GET", "/rooms/demo:lobby/history?since=0");
    assert.ok(history.json.messages.some((m) => m.data.text === "from the browser"));
  } finally {
    await browser.close();
  }
});

test("wrangler deploy --dry-run validates the config and bundle", () => {
  const outdir = tempDir("dry");
  const run = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir],
    {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
      encoding: "utf8",
    },
  );
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /--dry-run: exiting now/);
  assert.match(run.stdout, /env\.ROOMS \(RoomObject\)\s+Durable Object/);
  assert.match(run.stdout, /UPGRADES_PER_IP/);
  assert.doesNotMatch(run.stdout, /ROOMCAST_DEV_TOKENS|ROOMCAST_SECRET|ROOMCAST_API_KEY/, "local secrets never go into a deploy");
  const files = readdirSync(outdir);
  assert.ok(files.includes("index.js"), files.join(","));
  assert.ok(
    files.some((f) => f.endsWith(".wasm")),
    files.join(","),
  );
  assert.ok(existsSync(join(outdir, "index.js")));
});
