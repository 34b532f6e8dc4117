// The demo pages as a newcomer uses them: chat between two browsers (also across going offline
// and a runtime restart; rewind on arrival, paging back, who is typing), the forms' validation,
// live cursors, and the live log tail under a burst; and every page at a phone's width (390 px)
// and a desktop window's (1280 px): nothing scrolls sideways or is cut off (layoutProblems), long
// log lines wrap, a cursor's name tag flips at the board's edges, the log meter stays consistent,
// the index looks like the other pages. Screenshots go to tests/artifacts/ (<page>-<width>.png).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { countSockets, launchChromium } from "../browser.mjs";
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
const DESK = { width: 1280, height: 800 };
const WIDTHS = [PHONE, DESK];
const PAGES = ["/", "/chat.html", "/logs.html", "/cursors.html", "/team.html"];
/** A browser window of `viewport`'s size; the phone one as a phone has it (touch, 2x pixels). */
const windowOf = (viewport) =>
  browser.newContext(viewport === PHONE ? { viewport, deviceScaleFactor: 2, isMobile: true, hasTouch: true } : { viewport });

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

/**
 * What a reader would find wrong with the page as laid out now, as sentences (none: nothing):
 * - the page scrolls sideways (document.scrollingElement.scrollWidth > clientWidth);
 * - a piece of text is cut off: the element holding it is wider inside than its box
 *   (scrollWidth > clientWidth; an element that wraps its text by design never is), or a line of
 *   it reaches past the window's left or right edge, or past the box of an ancestor (or the
 *   element itself) that clips: sideways any overflow other than visible (a scroller too: a
 *   sideways scroller hides the end of a line), up and down only overflow hidden or clip (a
 *   vertical scroller shows the rest when scrolled; that is not cutting off, nor is what clips
 *   the scroller cutting off the lines scrolled out of its view).
 * Runs in the page (page.evaluate): self-contained.
 */
function layoutProblems() {
  const problems = [];
  const root = document.scrollingElement;
  if (root.scrollWidth > root.clientWidth) problems.push(`the page scrolls sideways: ${root.scrollWidth} > ${root.clientWidth} px`);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? `#${el.id}` : "") + [...el.classList].map((c) => `.${c}`).join("");
  const SLACK = 1; // px: subpixel rounding
  const range = document.createRange();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const wide = new Set();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.data.trim() || !el.checkVisibility({ visibilityProperty: true })) continue;
    range.selectNodeContents(node);
    const lines = [...range.getClientRects()].filter((r) => r.width > 0);
    if (lines.length === 0) continue; // not rendered (a <script>, a hidden form)
    const what = `${name(el)} "${node.data.trim().slice(0, 40)}"`;
    if (el.scrollWidth > el.clientWidth && !wide.has(el)) {
      wide.add(el);
      problems.push(`${what}: wider than its box (${el.scrollWidth} > ${el.clientWidth} px)`);
    }
    const clips = [{ who: "the window", left: 0, right: innerWidth, top: -Infinity, bottom: Infinity }];
    let scrolled = false; // inside a vertical scroller: up and down, what clips is its business
    for (let a = el; a && a !== document.documentElement; a = a.parentElement) {
      const style = getComputedStyle(a);
      const sideways = style.overflowX !== "visible";
      const vertical = !scrolled && (style.overflowY === "hidden" || style.overflowY === "clip");
      scrolled ||= style.overflowY === "auto" || style.overflowY === "scroll";
      if (!sideways && !vertical) continue;
      const box = a.getBoundingClientRect();
      const left = box.left + a.clientLeft;
      const top = box.top + a.clientTop;
      clips.push({
        who: name(a),
        left: sideways ? left : -Infinity,
        right: sideways ? left + a.clientWidth : Infinity,
        top: vertical ? top : -Infinity,
        bottom: vertical ? top + a.clientHeight : Infinity,
      });
    }
    for (const c of clips) {
      const cut = lines.find(
        (r) => r.left < c.left - SLACK || r.right > c.right + SLACK || r.top < c.top - SLACK || r.bottom > c.bottom + SLACK,
      );
      if (cut) {
        const r = (v) => Math.round(v);
        problems.push(`${what}: cut off by ${c.who} (a line at x ${r(cut.left)}..${r(cut.right)}, y ${r(cut.top)}..${r(cut.bottom)})`);
        break;
      }
    }
  }
  return problems;
}

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

/** The look the demo pages share: the style sheets linked, and what they give the body and header. */
function look() {
  const css = (el, props) => el && Object.fromEntries(props.map((p) => [p, getComputedStyle(el).getPropertyValue(p)]));
  return {
    stylesheets: [...document.querySelectorAll('link[rel="stylesheet"]')].map((l) => new URL(l.href).pathname),
    body: css(document.body, ["background-color", "color", "font-family", "font-size", "margin"]),
    header: css(document.querySelector("body > header"), ["background-color", "color", "padding"]),
    headerLink: css(document.querySelector("body > header a"), ["color", "font-weight"]),
  };
}

test("every page at 390 and 1280 px: nothing scrolls sideways or is cut off, the chat included with long names, long words and someone typing", async () => {
  for (const viewport of WIDTHS) {
    const w = viewport.width;
    const room = roomName("chat:width");
    const [win, desk] = await Promise.all([windowOf(viewport), browser.newContext()]);
    const page = await win.newPage();
    for (const path of PAGES) {
      await page.goto(`${edge.url}${path}`);
      assert.deepEqual(await page.evaluate(layoutProblems), [], `${path} at ${w} px`);
    }
    await joinChat(win, "ada", room, page);
    const longName = "a-member-with-a-long-name.x_1234"; // 32 characters, the most the form takes
    const other = await joinChat(desk, longName, room);
    await other.fill("#text", `a-long-word-${"x".repeat(300)}`);
    await other.press("#text", "Enter");
    await other.fill("#text", "and a long sentence ".repeat(20));
    await other.press("#text", "Enter");
    await page.waitForFunction(() => document.querySelectorAll("#messages li").length === 2);
    await other.locator("#text").pressSequentially("typing");
    await page.waitForFunction((n) => document.getElementById("typing").textContent === `${n} is typing…`, longName);
    await page.fill("#text", `hi from ada at ${w} px`);
    await page.press("#text", "Enter");
    await page.waitForSelector("#messages li.confirmed");
    assert.ok((await scrollWidth(page)) <= w, `chat: ${await scrollWidth(page)} px wide`);
    assert.deepEqual(await page.evaluate(layoutProblems), [], `chat at ${w} px`);
    const members = await page.$$eval("#members li", (els) => els.map((e) => e.textContent));
    assert.deepEqual(members.sort(), [longName, "ada"].sort());
    await page.screenshot({ path: join(ARTIFACTS, `chat-${w}.png`) });
    await Promise.all([win.close(), desk.close()]);
  }
});

test("index at 390 and 1280 px: the other pages' look (style.css, header), and the lobby's long lines wrap whole", async () => {
  for (const viewport of WIDTHS) {
    const w = viewport.width;
    const win = await windowOf(viewport);
    const page = await win.newPage();
    await page.goto(`${edge.url}/chat.html`);
    const shared = await page.evaluate(look);
    assert.ok(shared.stylesheets.includes("/style.css") && shared.header, JSON.stringify(shared));
    await page.goto(`${edge.url}/`);
    assert.deepEqual(await page.evaluate(look), shared, `/ at ${w} px looks like chat.html`);
    await page.waitForFunction(() => document.getElementById("status").textContent === "open");
    const sentence = "a message long enough to need more than one line of the lobby's log ".repeat(4).trim();
    const word = `a-long-word-${"x".repeat(200)}`;
    for (const text of [sentence, word]) {
      await page.fill("#text", text);
      await page.press("#text", "Enter");
    }
    await page.waitForFunction((t) => document.getElementById("log").textContent.includes(t), word);
    assert.deepEqual(await page.evaluate(layoutProblems), [], `/ at ${w} px`);
    await page.screenshot({ path: join(ARTIFACTS, `index-${w}.png`) });
    await win.close();
  }
});

test("forms: every pattern compiles as a v-flag RegExp; a room name with a space is refused, a display name with a space and an accent is not", async () => {
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
        // a pattern the browser dropped would let every one of these through
        const mismatches = ["has space", "Zoë Ann", "   "].map((v) => {
          el.value = v;
          return el.validity.patternMismatch;
        });
        el.value = value;
        return { id: el.id, pattern: el.pattern, compiles, mismatches };
      }),
    );
    for (const input of inputs) {
      const name = input.id === "name" || input.id === "peer";
      // a display name is any text but blank; a room name has no spaces
      const expected = name ? [false, false, true] : [true, true, true];
      assert.ok(input.compiles, `${path} #${input.id}: ${JSON.stringify(input)}`);
      assert.deepEqual(input.mismatches, expected, `${path} #${input.id}: ${JSON.stringify(input)}`);
      checked++;
    }
  }
  assert.equal(checked, 7, "chat, cursors: name and room; logs: room; team: name and a DM's peer");
  await page.close();
});

test("chat and cursors: a display name with a space and an accent joins; the token carries a derived user id and the name in meta", async () => {
  for (const path of ["/chat.html", "/cursors.html"]) {
    const page = await browser.newPage();
    const tokens = [];
    page.on("request", (r) => {
      if (r.url().includes("/dev/token")) tokens.push(new URL(r.url()).searchParams);
    });
    await page.goto(`${edge.url}${path}`);
    await page.fill("#name", "   ");
    await page.fill("#room", roomName("chat:form"));
    await page.click("#join button");
    const blank = await page.evaluate(() => ({
      mismatch: document.getElementById("name").validity.patternMismatch,
      message: document.getElementById("name").validationMessage,
      connected: typeof window.room?.publish === "function", // (window.room alone is the #room input)
    }));
    assert.equal(blank.mismatch, true, `${path}: a blank name is refused`);
    assert.match(blank.message, /\S/, `${path}: the browser has a message for it`);
    assert.equal(blank.connected, false, `${path}: no connect() call`);
    await page.fill("#name", "  Zoë Ann ");
    await page.click("#join button");
    await page.waitForSelector('#status[data-state="open"]');
    assert.equal(tokens.length, 1, `${path}: one token fetched, for the valid name only`);
    const user = tokens[0].get("user");
    assert.match(user, /^n-[0-9a-f]{20}$/, `${path}: the user id is derived from the name`);
    assert.deepEqual(JSON.parse(tokens[0].get("meta")), { name: "Zoë Ann" }, `${path}: the name, trimmed, is the meta`);
    const members = await page.evaluate(() => window.room.members().map((m) => [m.user, m.meta?.name]));
    assert.deepEqual(members, [[user, "Zoë Ann"]]);
    if (path === "/chat.html") {
      await page.fill("#text", "hej");
      await page.press("#text", "Enter");
      await page.waitForSelector("#messages li.confirmed");
      assert.equal(await page.$eval("#messages li.confirmed b", (b) => b.textContent), "Zoë Ann");
    } else {
      // the same name is the same user id, in any tab (identity.js): another page derives it alike
      const again = await page.evaluate(async () => (await import("/identity.js")).userId("Zoë Ann"));
      assert.equal(again, user);
    }
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
  await a.screenshot({ path: join(ARTIFACTS, "cursors-sweep-390.png") });

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

test("log tail at 390 and 1280 px: long lines wrap whole, nothing is cut off, the meter never shows more lines shown than received", async () => {
  for (const viewport of WIDTHS) {
    const w = viewport.width;
    const room = roomName("logs:width");
    const win = await windowOf(viewport);
    const page = await win.newPage();
    await page.goto(`${edge.url}/logs.html?room=${room}`);
    await page.waitForSelector('#status[data-state="open"]');
    // The meter as the reader sees it: read after each change to it (the observer runs once the
    // script that changed it is done), the first reading with more shown than received kept.
    await page.evaluate(() => {
      const n = (id) => Number(document.getElementById(id).textContent);
      window.meter = { reads: 0, wrong: null };
      new MutationObserver(() => {
        window.meter.reads++;
        const [shown, received] = [n("shown"), n("total")];
        if (shown > received) window.meter.wrong ??= { shown, received };
      }).observe(document.getElementById("shown").parentElement, { subtree: true, childList: true, characterData: true });
    });
    // 2,000 lines over about a second, in batches of 200 (the log script's pace).
    const count = 2000;
    const feed = [join(ROOT, "tools", "demo-logs.mjs"), "--url", edge.url, "--room", room, "--rate", "2000", "--count", `${count}`];
    await promisify(execFile)(process.execPath, feed);
    await page.waitForFunction((n) => document.getElementById("total").textContent === `${n}`, count, { timeout: 30_000 });
    await page.waitForFunction(() => document.getElementById("log").lastElementChild?.textContent.includes("request 2000 handled"));
    const meter = await page.evaluate(() => window.meter);
    assert.ok(meter.reads >= 10, `the meter changed ${meter.reads} times while the lines came`);
    assert.equal(meter.wrong, null, `at ${w} px the meter showed ${JSON.stringify(meter.wrong)}`);

    // A short line, a long sentence and a long unbroken word: each shows whole, the long ones on
    // more than one line, in the log's view (it follows the newest line).
    const stamp = new Date().toISOString();
    const lines = [
      `${stamp} INFO  ok`,
      `${stamp} WARN  app[1] ${"a warning long enough to need more than one line of the log view ".repeat(6).trim()}`,
      `${stamp} ERROR app[1] GET /download?token=${"Zm9vYmFyYmF6".repeat(30)} failed`,
    ];
    const posted = await api(edge, "POST", `/rooms/${room}/messages`, [{ data: { lines } }]);
    assert.equal(posted.status, 200, posted.text);
    await page.waitForFunction((last) => document.getElementById("log").lastElementChild?.textContent === last, lines.at(-1));
    const shown = await page.$eval("#log", (log) => {
      const view = log.getBoundingClientRect();
      const range = document.createRange();
      return [...log.children].slice(-3).map((el) => {
        range.selectNodeContents(el);
        const box = el.getBoundingClientRect();
        return {
          text: el.textContent,
          height: box.height,
          lines: new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size,
          inView: box.top >= view.top - 1 && box.bottom <= view.bottom + 1,
        };
      });
    });
    assert.deepEqual(
      shown.map((l) => l.text),
      lines,
    );
    const [short, ...long] = shown;
    assert.equal(short.lines, 1, `at ${w} px: ${JSON.stringify(short)}`);
    for (const l of long) {
      assert.ok(l.lines >= 2 && l.height >= 2 * short.height - 1, `at ${w} px, wrapped: ${JSON.stringify({ ...l, text: undefined })}`);
    }
    assert.ok(
      shown.every((l) => l.inView),
      `at ${w} px, in the view: ${shown.map((l) => l.inView)}`,
    );
    assert.deepEqual(await page.evaluate(layoutProblems), [], `log tail at ${w} px`);
    await page.screenshot({ path: join(ARTIFACTS, `logs-${w}.png`) });
    await win.close();
  }
});

test("cursors at 390 and 1280 px: a name tag near the right or bottom edge flips to the other side and shows whole", async () => {
  const longName = "a-member-with-a-long-name.x_1234"; // 32 characters, the most the form takes
  for (const viewport of WIDTHS) {
    const w = viewport.width;
    const room = roomName("cursors:edge");
    const [win, desk] = await Promise.all([windowOf(viewport), browser.newContext()]);
    const page = await joinCursors(win, "ada", room);
    const mover = await joinCursors(desk, longName, room);
    await page.waitForFunction((n) => document.getElementById("members").textContent.includes(n), longName);
    const board = await mover.locator("#board").boundingBox();
    /** Moves the other page's pointer to (x, y) of its board; where its cursor shows here. */
    const moveTo = async (x, y) => {
      await mover.mouse.move(board.x + board.width * x, board.y + board.height * y);
      return page
        .waitForFunction(
          ([user, x, y]) => {
            const el = document.querySelector(`.cursor[data-user="${user}"]`);
            // (not yet drawn: no data-x, and NaN is never near)
            if (!(Math.abs(el?.dataset.x - x) <= 0.01 && Math.abs(el?.dataset.y - y) <= 0.01)) return false;
            const b = document.getElementById("board").getBoundingClientRect();
            const label = el.querySelector("span");
            const l = label.getBoundingClientRect();
            return {
              tip: { x: b.left + el.dataset.x * b.width, y: b.top + el.dataset.y * b.height },
              board: { left: b.left, right: b.right, top: b.top, bottom: b.bottom },
              label: { left: l.left, right: l.right, top: l.top, bottom: l.bottom, text: label.textContent },
              truncated: label.scrollWidth > label.clientWidth,
              window: innerWidth,
            };
          },
          [longName, x, y],
        )
        .then((h) => h.jsonValue());
    };
    const inside = (c, where) => {
      const { label, board } = c;
      const ok =
        label.left >= board.left - 1 && label.right <= board.right + 1 && label.top >= board.top - 1 && label.bottom <= board.bottom + 1;
      assert.ok(ok && label.right <= c.window + 1, `${where} at ${w} px, the name tag is inside the board: ${JSON.stringify(c)}`);
      assert.equal(label.text, longName);
      assert.equal(c.truncated, false, `${where} at ${w} px, the whole name shows`);
    };

    // Away from the edges: the tag sits right of and below the arrow's tip.
    let c = await moveTo(0.25, 0.35);
    inside(c, "at (25%, 35%)");
    assert.ok(c.label.left >= c.tip.x && c.label.top >= c.tip.y, `right of and below the tip: ${JSON.stringify(c)}`);
    // Near the right edge it flips to the left of the tip; near the bottom, above it.
    c = await moveTo(0.98, 0.5);
    inside(c, "at (98%, 50%)");
    assert.ok(c.label.right <= c.tip.x + 1 && c.label.top >= c.tip.y, `left of the tip: ${JSON.stringify(c)}`);
    assert.deepEqual(await page.evaluate(layoutProblems), [], `cursors at ${w} px, (98%, 50%)`);
    await page.screenshot({ path: join(ARTIFACTS, `cursors-${w}.png`) });
    c = await moveTo(0.98, 0.98);
    inside(c, "at (98%, 98%)");
    assert.ok(c.label.right <= c.tip.x + 1 && c.label.bottom <= c.tip.y + 1, `left of and above the tip: ${JSON.stringify(c)}`);
    c = await moveTo(0.02, 0.98);
    inside(c, "at (2%, 98%)");
    assert.ok(c.label.left >= c.tip.x && c.label.bottom <= c.tip.y + 1, `right of and above the tip: ${JSON.stringify(c)}`);
    assert.deepEqual(await page.evaluate(layoutProblems), [], `cursors at ${w} px, (2%, 98%)`);
    await Promise.all([win.close(), desk.close()]);
  }
});

/** The team chat page, signed in as `name`, counting the page's WebSockets. */
async function joinTeam(context, name) {
  const page = await context.newPage();
  await countSockets(page);
  await page.goto(`${edge.url}/team.html`);
  await page.fill("#name", name);
  await page.click("#join button");
  await page.waitForSelector('#status[data-state="open"]');
  return page;
}

const badge = (page, room) => page.$eval(`button[data-room="${room}"]`, (b) => b.querySelector(".badge")?.textContent ?? "");

test("team chat: channels and a DM on one socket, unread badges, read on one tab clears the other's", async () => {
  const desk = await browser.newContext();
  const phone = await windowOf(PHONE);
  const [ann, ben, ben2] = [await joinTeam(desk, "ann"), await joinTeam(desk, "ben"), await joinTeam(phone, "ben")];
  // ann writes in #random while ben's tabs are in #general: both of ben's tabs get a badge
  await ann.click('button[data-room="chat:random"]');
  await ann.waitForFunction(() => document.getElementById("title").textContent === "# random");
  for (const text of ["one", "two"]) {
    await ann.fill("#text", text);
    await ann.press("#text", "Enter");
  }
  for (const tab of [ben, ben2]) {
    await tab.waitForFunction(() => document.querySelector('button[data-room="chat:random"] .badge')?.textContent === "2", null, {
      timeout: 15_000,
    });
  }
  // ben opens #random on one tab: he reads it there, and the other tab's badge goes too
  await ben.click('button[data-room="chat:random"]');
  await ben.waitForFunction(() => document.querySelectorAll("#messages li").length === 2);
  await ben2.waitForFunction(() => !document.querySelector('button[data-room="chat:random"] .badge'), null, { timeout: 15_000 });
  assert.equal(await badge(ben, "chat:random"), "");
  // a DM from ann: ben sees it in his list with a badge, on one socket still
  await ann.fill("#peer", "ben");
  await ann.press("#peer", "Enter");
  await ann.waitForFunction(() => document.getElementById("title").textContent === "@ ben");
  await ann.fill("#text", "psst");
  await ann.press("#text", "Enter");
  await ben.waitForFunction(() => document.querySelector('button[data-room="dm~ann,ben"] .badge')?.textContent === "1", null, {
    timeout: 15_000,
  });
  for (const tab of [ann, ben, ben2]) assert.equal(await tab.evaluate(() => window.sockets.length), 1, "one socket per tab");
  assert.deepEqual(await ben2.evaluate(layoutProblems), [], "team chat at 390 px");
  await ben2.screenshot({ path: join(ARTIFACTS, "team-390.png") });
  await Promise.all([desk.close(), phone.close()]);
});
