// The demo pages as a newcomer uses them: chat between two browsers (also across going offline
// and a runtime restart; rewind on arrival, paging back, who is typing, phone width), the forms'
// validation, live cursors, and the live log tail under a burst. Screenshots go to tests/artifacts/.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { launchChromium } from "../browser.mjs";
import { api, ROOT, roomName, startEdge, tempDir } from "../harness.mjs";

const ARTIFACTS = join(ROOT, "tests", "artifacts");
const persistDir = tempDir("demo");
let edge, browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  [edge, browser] = await Promise.all([startEdge({ persistDir }), launchChromium()]);
});
after(async () => {
  await Promise.all([edge?.stop(), browser?.close()]);
});

const PHONE = { width: 390, height: 844 };
const PAGES = ["/", "/chat.html", "/logs.html", "/cursors.html"];

async function joinChat(context, name, room, page) {
  page ??= await context.newPage();
  await page.goto(`${edge.url}/chat.html`);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join button");
  await page.waitForSelector('#status[data-state="open"]');
  return page;
}

const texts = (page) => page.$$eval("#messages li span", (els) => els.map((e) => e.textContent));
const seqs = (page) => page.$$eval("#messages li[data-seq]", (els) => els.map((e) => Number(e.dataset.seq)));
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** Whether the page scrolls sideways: the document is wider than the window. */
const scrollWidth = (page) => page.evaluate(() => document.scrollingElement.scrollWidth);

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
  // Offline, the page may learn of the dead socket only from its heartbeat: a missing pong, up to
  // the ping interval plus the pong timeout (20 + 10 s), which is Playwright's default wait.
  await b.waitForSelector('#status[data-state="reconnecting"]', { timeout: 45_000 });
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
  assert.deepEqual(
    history.json.messages.map((m) => m.data.text),
    ["hello from ada", "sent offline 1", "sent offline 2"],
  );
  await Promise.all([ctxA.close(), ctxB.close()]);
});

async function joinForm(page, name, room) {
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join button");
  await page.waitForSelector('#status[data-state="open"]');
}

const messageCount = (n) => [(n) => document.querySelectorAll("#messages li").length === n, n];

test("chat: arriving shows the last 50 messages (rewind), so does a reload, and scrolling to the top pages back to the start", async () => {
  const room = roomName("chat:rewind");
  const published = await api(
    edge,
    "POST",
    `/rooms/${room}/messages`,
    range(1, 100).map((i) => ({ data: { text: `old ${i}` } })),
  );
  assert.equal(published.status, 200, published.text);
  const ctx = await browser.newContext();
  const page = await joinChat(ctx, "ada", room);
  await page.waitForFunction(...messageCount(50));
  assert.deepEqual(await seqs(page), range(51, 100));
  assert.equal((await texts(page)).at(-1), "old 100");
  await page.fill("#text", "after the rewind");
  await page.press("#text", "Enter");
  await page.waitForSelector('#messages li.confirmed[data-seq="101"]');

  // A reload is a fresh connection: it rewinds again, this page's own message included.
  await page.reload();
  await joinForm(page, "ada", room);
  await page.waitForFunction(...messageCount(50));
  assert.deepEqual(await seqs(page), range(52, 101), "the last 50, each once, in order");
  assert.equal((await texts(page)).at(-1), "after the rewind");
  const atBottom = await page.$eval("#scroll", (el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2);
  assert.ok(atBottom, "the view follows the newest message");

  // Scrolling to the top loads the page before; the reader's place stays where it was.
  await page.$eval("#scroll", (el) => {
    el.scrollTop = 0;
  });
  await page.waitForFunction(...messageCount(100));
  assert.deepEqual(await seqs(page), range(2, 101));
  assert.ok(await page.$eval("#scroll", (el) => el.scrollTop > 0), "the lines went in above the view");
  await page.waitForSelector('#older[data-state="idle"]');
  await page.$eval("#scroll", (el) => {
    el.scrollTop = 0;
  });
  await page.waitForSelector('#older[data-state="done"]');
  assert.deepEqual(await seqs(page), range(1, 101), "down to the first message, nothing twice");
  assert.equal(await page.textContent("#load-older"), "start of the room");
  await ctx.close();
});

test("chat: a room shorter than one page says it starts there, without a request for older messages", async () => {
  const room = roomName("chat:short");
  const published = await api(
    edge,
    "POST",
    `/rooms/${room}/messages`,
    range(1, 3).map((i) => ({ data: { text: `only ${i}` } })),
  );
  assert.equal(published.status, 200, published.text);
  const ctx = await browser.newContext();
  const page = await joinChat(ctx, "ada", room);
  await page.waitForFunction(...messageCount(3));
  await page.waitForSelector('#older[data-state="done"]');
  assert.equal(await page.textContent("#load-older"), "start of the room");
  assert.ok(await page.$eval("#load-older", (b) => b.disabled));
  await ctx.close();
});

test("chat: who is typing shows on the other page and goes away (field cleared, message sent)", async () => {
  const room = roomName("chat:typing");
  const [ctxA, ctxB] = await Promise.all([browser.newContext(), browser.newContext()]);
  const a = await joinChat(ctxA, "ada", room);
  const b = await joinChat(ctxB, "bob", room);
  await a.waitForFunction(() => [...document.querySelectorAll("#members li.online")].some((li) => li.textContent === "bob"));
  const typing = (text) => [(t) => document.getElementById("typing").textContent === t, text];

  await b.locator("#text").pressSequentially("hel");
  await a.waitForFunction(...typing("bob is typing…"));
  assert.equal(await b.textContent("#typing"), "", "not shown to the typist");
  await b.fill("#text", "");
  await a.waitForFunction(...typing(""));

  await b.locator("#text").pressSequentially("hello");
  await a.waitForFunction(...typing("bob is typing…"));
  await b.press("#text", "Enter");
  await a.waitForFunction(() => document.getElementById("messages").textContent.includes("hello"));
  await a.waitForFunction(...typing(""));
  // Typing notices are broadcasts: nothing of them is stored.
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    history.json.messages.map((m) => m.data.text),
    ["hello"],
  );
  await Promise.all([ctxA.close(), ctxB.close()]);
});

test("phone width (390 px): no demo page scrolls sideways, the chat included with long names, long words and someone typing", async () => {
  const room = roomName("chat:phone");
  const [phone, desk] = await Promise.all([
    browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true }),
    browser.newContext(),
  ]);
  const page = await phone.newPage();
  for (const path of PAGES) {
    await page.goto(`${edge.url}${path}`);
    assert.ok((await scrollWidth(page)) <= PHONE.width, `${path}: ${await scrollWidth(page)} px wide`);
  }
  await joinChat(phone, "ada", room, page);
  const longName = "a-member-with-a-long-name.x_1234"; // 32 characters, the most the form takes
  const other = await joinChat(desk, longName, room);
  await other.fill("#text", `a-long-word-${"x".repeat(300)}`);
  await other.press("#text", "Enter");
  await other.fill("#text", "and a long sentence ".repeat(20));
  await other.press("#text", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("#messages li").length === 2);
  await other.locator("#text").pressSequentially("typing");
  await page.waitForFunction((n) => document.getElementById("typing").textContent === `${n} is typing…`, longName);
  await page.fill("#text", "hi from a phone");
  await page.press("#text", "Enter");
  await page.waitForSelector("#messages li.confirmed");
  assert.ok((await scrollWidth(page)) <= PHONE.width, `chat: ${await scrollWidth(page)} px wide`);
  const members = await page.$$eval("#members li", (els) => els.map((e) => e.textContent));
  assert.deepEqual(members.sort(), [longName, "ada"].sort());
  await page.screenshot({ path: join(ARTIFACTS, "chat-390.png") });
  await Promise.all([phone.close(), desk.close()]);
});

test("forms: every pattern compiles as a v-flag RegExp, and a name with a space is refused with the form's message, never connecting", async () => {
  const page = await browser.newPage();
  let checked = 0;
  for (const path of PAGES) {
    await page.goto(`${edge.url}${path}`);
    const inputs = await page.$$eval("input[pattern]", (els) =>
      els.map((el) => {
        let compiles = true;
        try {
          new RegExp(`^(?:${el.pattern})$`, "v");
        } catch {
          compiles = false;
        }
        const value = el.value;
        el.value = "has space"; // a pattern the browser dropped would let this through
        const mismatch = el.validity.patternMismatch;
        el.value = value;
        return { id: el.id, pattern: el.pattern, compiles, mismatch };
      }),
    );
    for (const input of inputs) {
      assert.ok(input.compiles && input.mismatch, `${path} #${input.id}: ${JSON.stringify(input)}`);
      checked++;
    }
  }
  assert.equal(checked, 5, "chat, cursors: name and room; logs: room");
  await page.close();

  for (const path of ["/chat.html", "/cursors.html"]) {
    const page = await browser.newPage();
    const sockets = [];
    const tokens = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    page.on("request", (r) => {
      if (r.url().includes("/dev/token")) tokens.push(r.url());
    });
    await page.goto(`${edge.url}${path}`);
    await page.fill("#name", "ada lovelace");
    await page.fill("#room", roomName("chat:form"));
    await page.click("#join button");
    const form = await page.evaluate(() => ({
      patternMismatch: document.getElementById("name").validity.patternMismatch,
      message: document.getElementById("name").validationMessage,
      formShown: !document.getElementById("join").hidden,
      connected: typeof window.room?.publish === "function", // (window.room alone is the #room input)
    }));
    assert.equal(form.patternMismatch, true, path);
    assert.match(form.message, /\S/, `${path}: the browser has a message for it`);
    assert.ok(form.formShown, path);
    assert.equal(form.connected, false, `${path}: no connect() call`);
    // The same form with a valid name connects, and is seen connecting by the same probes.
    await page.fill("#name", "ada_lovelace");
    await page.click("#join button");
    await page.waitForSelector('#status[data-state="open"]');
    assert.equal(tokens.length, 1, `${path}: one token fetched, for the valid name only`);
    assert.equal(sockets.length, 1, `${path}: ${sockets.join(", ")}`);
    await page.close();
  }
});

async function joinCursors(context, name, room) {
  const page = await context.newPage();
  await page.goto(`${edge.url}/cursors.html?room=${room}&name=${name}`);
  await page.click("#join button");
  await page.waitForSelector('#status[data-state="open"]');
  return page;
}

test("cursors: the other page's cursor shows with its name, moves (sent at most 60 times a second), and goes when it leaves", async () => {
  const room = roomName("cursors:demo");
  const [ctxA, ctxB] = await Promise.all([
    browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true }),
    browser.newContext(),
  ]);
  const a = await joinCursors(ctxA, "ada", room);
  const b = await joinCursors(ctxB, "bob", room);
  await a.waitForFunction(() => document.getElementById("members").textContent.includes("bob"));
  const box = await b.locator("#board").boundingBox();
  const at = (x, y) => [box.x + box.width * x, box.y + box.height * y];
  const near = ([x, y]) => [
    ([wx, wy]) => {
      const el = document.querySelector('.cursor[data-user="bob"]');
      return el && Math.abs(el.dataset.x - wx) < 0.01 && Math.abs(el.dataset.y - wy) < 0.01;
    },
    [x, y],
  ];

  await b.mouse.move(...at(0.25, 0.35));
  const cursor = a.locator('.cursor[data-user="bob"]');
  await cursor.waitFor();
  assert.equal(await cursor.locator("span").textContent(), "bob");
  await a.waitForFunction(...near([0.25, 0.35]));

  // A long sweep: bob's page sends at most 60 updates a second, ada's cursor of bob moves
  // through the points between, and ends where bob's pointer is.
  await a.evaluate(() => {
    window.seen = new Set();
    const el = document.querySelector('.cursor[data-user="bob"]');
    new MutationObserver(() => window.seen.add(el.style.transform)).observe(el, { attributes: true });
  });
  await b.evaluate(() => {
    window.sends = [];
    const send = window.room.broadcast.bind(window.room);
    window.room.broadcast = (data) => {
      window.sends.push(performance.now());
      return send(data);
    };
  });
  for (let i = 1; i <= 40; i++) await b.mouse.move(...at(0.25 + i * 0.0125, 0.35 + i * 0.01), { steps: 4 });
  await a.waitForFunction(...near([0.75, 0.75]));
  const sends = await b.evaluate(() => window.sends);
  const gaps = sends.slice(1).map((t, i) => t - sends[i]);
  assert.ok(sends.length >= 5, `${sends.length} updates sent`);
  assert.ok(Math.min(...gaps) >= 1000 / 60 - 1.5, `at most 60 a second: gaps ${gaps.map(Math.round)}`);
  assert.ok((await a.evaluate(() => window.seen.size)) >= 5, "moved through the points between");
  // drawn where it says: 3/4 across ada's (narrower) board
  const [cur, board] = await Promise.all([cursor.boundingBox(), a.locator("#board").boundingBox()]);
  assert.ok(Math.abs(cur.x - (board.x + board.width * 0.75)) < 2, `${cur.x} vs ${board.x + board.width * 0.75}`);
  assert.ok((await scrollWidth(a)) <= PHONE.width, `cursors: ${await scrollWidth(a)} px wide`);
  await a.screenshot({ path: join(ARTIFACTS, "cursors-390.png") });

  // The pointer leaves the board: the cursor goes; it comes back with the next move.
  await b.mouse.move(box.x + box.width / 2, box.y - 10);
  await cursor.waitFor({ state: "detached" });
  await b.mouse.move(...at(0.5, 0.5));
  await cursor.waitFor();
  // bob leaves the room: his cursor and his name go.
  await ctxB.close();
  await cursor.waitFor({ state: "detached" });
  await a.waitForFunction(() => !document.getElementById("members").textContent.includes("bob"));
  await ctxA.close();
});

test("cursors: in a room whose broadcast rate is below 60 a second, the page sends at the room's rate", async () => {
  const slow = await startEdge({ vars: { BROADCAST_RATE_PER_SEC: "20" } });
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    await page.goto(`${slow.url}/cursors.html?room=${roomName("cursors:slow")}&name=ada`);
    await page.click("#join button");
    await page.waitForSelector('#status[data-state="open"]');
    await page.waitForFunction(() => document.getElementById("rate").textContent === "20");
    await page.evaluate(() => {
      window.sends = [];
      const send = window.room.broadcast.bind(window.room);
      window.room.broadcast = (data) => {
        window.sends.push(performance.now());
        return send(data);
      };
    });
    const box = await page.locator("#board").boundingBox();
    for (let i = 1; i <= 60; i++) await page.mouse.move(box.x + (box.width * i) / 80, box.y + box.height / 2, { steps: 4 });
    await page.waitForFunction(() => window.sends.length >= 5);
    const sends = await page.evaluate(() => window.sends);
    const gaps = sends.slice(1).map((t, i) => t - sends[i]);
    assert.ok(Math.min(...gaps) >= 1000 / 20 - 1.5, `at most 20 a second: gaps ${gaps.map(Math.round)}`);
  } finally {
    await Promise.all([ctx.close(), slow.stop()]);
  }
});

test("log tail: a burst of 5,000 lines from the log script arrives, the last line shows, the DOM stays bounded", async () => {
  const room = roomName("logs:demo");
  const page = await browser.newPage();
  await page.goto(`${edge.url}/logs.html?room=${room}`);
  await page.waitForSelector('#status[data-state="open"]');
  await promisify(execFile)(process.execPath, [
    join(ROOT, "tools", "demo-logs.mjs"),
    "--url",
    edge.url,
    "--room",
    room,
    "--rate",
    "5000",
    "--count",
    "5000",
  ]);
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
