// Phones, trains and flaky networks (issue #24): 90 s offline with the SDK's default options, in
// Chromium: Playwright's offline mode for the page's own signals (which alone holds an open
// socket's frames), and a TCP proxy that blackholes the link (tests/flaky.mjs). A file of its own:
// each file of the suite must finish within 120 s.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launchChromium } from "../browser.mjs";
import { connectRooms, newPage, proxy, serveSite, VARS } from "../flaky.mjs";
import { api, roomName, startEdge, tempDir } from "../harness.mjs";

let edge, browser, site;
const persistDir = tempDir("offline-90s");
before(async () => {
  [edge, browser, site] = await Promise.all([startEdge({ persistDir, vars: VARS }), launchChromium(), serveSite()]);
});
after(async () => {
  await Promise.all([edge?.stop(), browser?.close(), site?.close()]);
});

const history = async (room) => (await api(edge, "GET", `/rooms/${room}/history?since=0`)).json.messages;

test("90 s offline with the default options, then online: the page recovers by itself and every publish made offline is stored once, in order (connect() and createClient())", async (t) => {
  const [room, joined] = [roomName("offline-90"), roomName("offline-90-session")];
  const both = [room, joined];
  const link = await proxy(edge.port);
  const { context, page } = await newPage(browser, site);
  try {
    await connectRooms(page, link.url, "phone", [room]);
    await connectRooms(page, link.url, "phone", [joined], { session: true });
    // the phone loses its network: the browser says so, and the link goes dead without a word
    link.set("blackhole");
    await context.setOffline(true);
    await page.waitForFunction((rooms) => rooms.every((r) => window.rooms[r].state === "reconnecting"), both, { timeout: 10_000 });
    await page.evaluate((rooms) => {
      window.acks = Promise.all(rooms.map((r) => Promise.all([1, 2, 3, 4, 5].map((n) => window.rooms[r].publish({ n })))));
      window.acks.catch((e) => (window.failed = e));
    }, both);
    const offlineFor = 90_000;
    await new Promise((r) => setTimeout(r, offlineFor));
    const during = await page.evaluate(
      (rooms) => [
        rooms.map((r) => window.rooms[r].state),
        window.client.status,
        window.failed?.code,
        rooms.flatMap((r) => window.logs[r].error.map((e) => e.code)),
      ],
      both,
    );
    assert.deepEqual(during.slice(0, 2), [["reconnecting", "reconnecting"], "reconnecting"], "still trying, not closed");
    assert.equal(during[2], undefined, "no publish rejected");
    assert.ok(
      during[3].every((c) => c === "token_failed"),
      during[3].join(),
    );
    link.set("pass");
    const back = Date.now();
    await context.setOffline(false);
    const acks = await page.evaluate(() => window.acks);
    const recovered = Date.now() - back;
    assert.deepEqual(acks, [
      [1, 2, 3, 4, 5],
      [1, 2, 3, 4, 5],
    ]);
    t.diagnostic(`both open and acknowledged ${recovered} ms after the network came back`);
    assert.ok(recovered < 5_000, `open and acknowledged ${recovered} ms after the network came back`);
    for (const r of both) {
      assert.deepEqual(
        (await history(r)).map((m) => m.data.n),
        [1, 2, 3, 4, 5],
        `${r}: each once, in order`,
      );
    }
    const states = await page.evaluate((rooms) => rooms.flatMap((r) => window.logs[r].status.map((s) => s.state)), both);
    assert.ok(!states.includes("closed"), states.join());
  } finally {
    await context.close();
    await link.close();
  }
});
