// The demo pages as a newcomer uses them: chat between two browsers (also across going offline
// and a runtime restart) and the live log tail under a burst. Screenshots go to tests/artifacts/.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { launchChromium } from "../browser.mjs";
import { api, ROOT, roomName, startEdge, tempDir } from "../harness.mjs";

const ARTIFACTS = join(ROOT, "tests", "artifacts");
const persistDir = tempDir("demo");
let edge, browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  [edge, browser] = await Promise.all([startEdge({ persistDir }), launchChromium()]);
});
after(async () => { await Promise.all([edge?.stop(), browser?.close()]); });

async function joinChat(context, name, room) {
  const page = await context.newPage();
  await page.goto(`${edge.url}/chat.html`);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join button");
  await page.waitForSelector('#status[data-state="open"]');
  return page;
}

const texts = (page) => page.$$eval("#messages li span", (els) => els.map((e) => e.textContent));

test("chat: two browsers see each other and exchange messages, also across going offline", async () => {
  const room = roomName("chat:demo");
  const [ctxA, ctxB] = await Promise.all([browser.newContext(), browser.newContext()]);
  const a = await joinChat(ctxA, "ada", room);
  const b = await joinChat(ctxB, "bob", room);
  await a.waitForFunction(() => [...document.querySelectorAll("#members li.online")].some((li) => li.textContent === "bob"));
  await b.waitForFunction(() => [...document.querySelectorAll("#members li.online")].some((li) => li.textContent === "ada"));

  await a.fill("#text", "hello from ada");
  await a.press("#text", "Enter");
  await a.waitForSelector("#messages li.confirmed");
  await b.waitForFunction(() => document.querySelector("#messages")?.textContent.includes("hello from ada"));
  await a.screenshot({ path: join(ARTIFACTS, "chat.png") });

  // bob goes offline; while he is, the runtime restarts; his messages wait as pending
  await ctxB.setOffline(true);
  const port = edge.port;
  await edge.stop("SIGKILL");
  edge = await startEdge({ persistDir, port });
  await b.waitForSelector('#status[data-state="reconnecting"]');
  for (const t of ["sent offline 1", "sent offline 2"]) {
    await b.fill("#text", t);
    await b.press("#text", "Enter");
  }
  assert.equal(await b.$$eval("#messages li.pending", (els) => els.length), 2);
  await ctxB.setOffline(false);
  await b.waitForFunction(() => document.querySelectorAll("#messages li.confirmed").length === 2, null, { timeout: 20_000 });
  await a.waitForFunction(() => document.querySelector("#messages").textContent.includes("sent offline 2"), null, { timeout: 20_000 });
  const seen = (await texts(a)).filter((t) => t.startsWith("sent offline"));
  assert.deepEqual(seen, ["sent offline 1", "sent offline 2"], "delivered once each, in order");
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(history.json.messages.map((m) => m.data.text), ["hello from ada", "sent offline 1", "sent offline 2"]);
  await Promise.all([ctxA.close(), ctxB.close()]);
});

test("log tail: a burst of 5,000 lines from the log script arrives, the last line shows, the DOM stays bounded", async () => {
  const room = roomName("logs:demo");
  const page = await browser.newPage();
  await page.goto(`${edge.url}/logs.html?room=${room}`);
  await page.waitForSelector('#status[data-state="open"]');
  await promisify(execFile)(process.execPath, [join(ROOT, "tools", "demo-logs.mjs"), "--url", edge.url, "--room", room,
    "--rate", "5000", "--count", "5000"]);
  await page.waitForFunction(() => document.getElementById("total").textContent === "5000", null, { timeout: 30_000 });
  await page.waitForFunction(() => document.getElementById("log").lastElementChild?.textContent.includes("request 5000 handled"));
  const lines = await page.$eval("#log", (el) => el.childElementCount);
  assert.ok(lines <= 1000, `${lines} lines in the DOM`);
  // pause stops rendering; the filter narrows what is shown
  await page.click("#follow");
  assert.equal(await page.textContent("#follow"), "Follow");
  await page.screenshot({ path: join(ARTIFACTS, "logs.png") });
  await page.close();
});
