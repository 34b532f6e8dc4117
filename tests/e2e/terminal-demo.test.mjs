// demo/terminal.html (xterm.js on the SDK) against the real runtime and a real `roomcast terminal`:
// a page with the input right types into the command and sees its output; a read-only page at a
// phone's width shows the current screen at once and the room refuses its keys; neither scrolls
// sideways.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { launchChromium } from "../browser.mjs";
import { Client, ROOT, roomName, startEdge, token, until } from "../harness.mjs";

/** The screen xterm.js shows, as text (trailing blanks off). */
const screenOf = (page) =>
  page.evaluate(() => {
    const b = window.term.buffer.active;
    const rows = [];
    for (let i = 0; i < window.term.rows; i++) rows.push(b.getLine(b.viewportY + i)?.translateToString(true) ?? "");
    return rows.join("\n").trimEnd();
  });
const sideways = (page) => page.evaluate(() => document.scrollingElement.scrollWidth > document.scrollingElement.clientWidth);

test("the terminal page types into the command with the input right, and only watches without it", async () => {
  execFileSync("cargo", ["build", "--quiet", "-p", "roomcast-cli"], { cwd: ROOT, stdio: "inherit" });
  const [edge, browser] = await Promise.all([startEdge(), launchChromium()]);
  const room = roomName("term");
  const agent = spawn(
    join(ROOT, "target", "debug", "roomcast"),
    ["terminal", room, "--", "sh", "-c", "printf 'hello\\nworld\\n'; exec cat"],
    {
      env: { ...process.env, ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: token("agent", { [room]: ["subscribe", "publish", "presence"] }) },
      stdio: "ignore",
    },
  );
  try {
    const desk = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await desk.goto(`${edge.url}/terminal.html?room=${room}&type=1&agent=agent`);
    await until(async () => (await screenOf(desk)).includes("hello\nworld"), { what: "the command's output on the page" });
    await desk.click("#screen");
    await desk.keyboard.type("abc");
    await desk.keyboard.press("Enter");
    // the tty echoes the line, then cat prints it
    await until(async () => (await screenOf(desk)).includes("world\nabc\nabc"), { what: "the typed line and cat's answer" });
    assert.equal(await sideways(desk), false);

    const phone = await (
      await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    ).newPage();
    await phone.goto(`${edge.url}/terminal.html?room=${room}&agent=agent`);
    await until(async () => (await screenOf(phone)).startsWith("hello\nworld\nabc\nabc"), { what: "a late joiner's first screen" });
    assert.equal(await sideways(phone), false, "the phone's page does not scroll sideways");
    // (a tap does not focus xterm.js's input on a touch screen without a soft keyboard)
    await phone.focus(".xterm-helper-textarea");
    await phone.keyboard.type("zzz");
    await phone.waitForFunction(() => document.getElementById("mode").textContent.includes("refused"));
    // The refused keys never reached the command: one more line from the typist shows the screen.
    await desk.keyboard.type("end");
    await desk.keyboard.press("Enter");
    await until(async () => (await screenOf(desk)).includes("abc\nend\nend"), { what: "the typist's next line" });
    assert.ok(!(await screenOf(desk)).includes("zzz"));
    await until(async () => (await screenOf(phone)).includes("end\nend"), { what: "the watcher following" });
  } finally {
    agent.kill();
    await Promise.all([edge.stop(), browser.close()]);
  }
});

test("another member's terminal messages neither draw on the page nor take its typist's keys", async () => {
  execFileSync("cargo", ["build", "--quiet", "-p", "roomcast-cli"], { cwd: ROOT, stdio: "inherit" });
  const [edge, browser] = await Promise.all([startEdge(), launchChromium()]);
  const room = roomName("term");
  const agent = spawn(join(ROOT, "target", "debug", "roomcast"), ["terminal", room, "--", "sh", "-c", "printf 'ready\\n'; exec cat"], {
    env: { ...process.env, ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: token("agent", { [room]: ["subscribe", "publish", "presence"] }) },
    stdio: "ignore",
  });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await page.goto(`${edge.url}/terminal.html?room=${room}&type=1&agent=agent`);
    await until(async () => (await screenOf(page)).includes("ready"), { what: "the command's output on the page" });
    // A member with publish (not input) posts terminal messages of its own, as a keyframe and output.
    const mallory = await Client.connect(edge, room, { cid: "mallory", user: "mallory" });
    await mallory.publish("k1", { term: "k", rows: 24, cols: 80, screen: "\u001b[2J\u001b[HFAKE", text: "FAKE" });
    const { seq } = await mallory.publish("o1", { term: "o", d: "FAKE\r\n" });
    await page.waitForFunction((s) => window.room.lastSeq >= s, seq);
    await page.click("#screen");
    await page.keyboard.type("secret");
    await page.keyboard.press("Enter");
    // the tty echoes the line, then cat prints it: the keys went to the agent
    await until(async () => (await screenOf(page)).includes("ready\nsecret\nsecret"), { what: "the typed line and cat's answer" });
    assert.ok(!(await screenOf(page)).includes("FAKE"), "another user's messages are not drawn");
    assert.deepEqual(
      mallory.frames.filter((f) => f.type === "input"),
      [],
      "no keystroke reached the other member",
    );
    await mallory.close();
  } finally {
    agent.kill();
    await Promise.all([edge.stop(), browser.close()]);
  }
});
