// createClient(): one socket for many rooms, through the built package, against real workerd: in
// headless Chromium (a tab with 20 rooms on one socket, read positions across two tabs) and in
// Node on the `ws` package (rooms resume at once after the socket drops, each from its own seq;
// a kick leaves one room and keeps the others).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";
import { countSockets, launchChromium, servePackage } from "../browser.mjs";
import { ALL_RIGHTS, api, roomName, startEdge, token, until } from "../harness.mjs";

let edge, browser, site, createClient;
const opened = [];
before(async () => {
  ({ createClient } = await import("../../sdk/dist/index.js"));
  [edge, browser, site] = await Promise.all([startEdge(), launchChromium(), servePackage()]);
});
after(async () => {
  for (const c of opened) c.close();
  await Promise.all([edge?.stop(), browser?.close(), site?.close()]);
});

const FAST = { minReconnectDelayMs: 100, maxReconnectDelayMs: 500 };

/** The package in Node, on `ws`, counting the sockets it opens. */
function nodeClient(user, patterns = { "*": ALL_RIGHTS }) {
  const sockets = [];
  class Counted extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const client = createClient({ url: edge.wsUrl, token: () => token(user, patterns), WebSocket: Counted, ...FAST });
  opened.push(client);
  return { client, sockets };
}

/** Records a room's events. */
function record(room) {
  const log = { message: [], status: [], gap: [], error: [], read: [], presence: [] };
  for (const e of Object.keys(log)) room.on(e, (p) => log[e].push(p));
  return log;
}

test("Chromium: one socket for 20 rooms, each room's messages once and in order", async () => {
  const rooms = Array.from({ length: 20 }, (_, i) => roomName(`tab${i}`));
  const page = await browser.newPage();
  await countSockets(page);
  await page.goto(site.url);
  await page.waitForFunction(() => window.ready === true);
  const t = token("ivy", { "*": ALL_RIGHTS });
  await page.evaluate(
    ({ url, rooms, t }) => {
      window.client = window.roomcast.createClient({ url, token: t });
      window.got = {};
      for (const name of rooms) {
        window.got[name] = [];
        const r = window.client.join(name);
        r.on("message", (m) => window.got[name].push(m.seq));
      }
    },
    { url: edge.wsUrl, rooms, t },
  );
  await page.waitForFunction(() => window.client.status === "open");
  for (const room of rooms) await api(edge, "POST", `/rooms/${room}/messages`, [{ data: 1 }, { data: 2 }, { data: 3 }]);
  await page.waitForFunction((rooms) => rooms.every((r) => window.got[r].length === 3), rooms, { timeout: 30_000 });
  const got = await page.evaluate(() => window.got);
  for (const room of rooms) assert.deepEqual(got[room], [1, 2, 3], room);
  assert.equal(await page.evaluate(() => window.sockets.length), 1, "one socket for the tab");
  // A publish from the page through its room, acknowledged with its seq.
  const seq = await page.evaluate((room) => window.client.join(room).publish({ hi: 1 }), rooms[0]);
  assert.equal(seq, 4);
  await page.close();
});

test("Node: after the socket drops every room resumes at once from its own seq; nothing is lost or doubled", async () => {
  const [a, b] = [roomName("resume-a"), roomName("resume-b")];
  const { client, sockets } = nodeClient("jack");
  const ra = client.join(a);
  const rb = client.join(b, { echo: true });
  const [la, lb] = [record(ra), record(rb)];
  await until(() => ra.state === "open" && rb.state === "open", { what: "both rooms open" });
  await api(edge, "POST", `/rooms/${a}/messages`, [{ data: 1 }, { data: 2 }]);
  assert.equal(await rb.publish("mine"), 1);
  await until(() => la.message.length === 2 && lb.message.length === 1, { what: "first messages" });
  // The socket drops; meanwhile both rooms move on.
  sockets[0].terminate();
  await until(() => client.status !== "open", { what: "the drop noticed" });
  await api(edge, "POST", `/rooms/${a}/messages`, [{ data: 3 }, { data: 4 }]);
  await api(edge, "POST", `/rooms/${b}/messages`, { data: 5 });
  await until(() => la.message.length === 4 && lb.message.length === 2, { what: "the missed messages", timeoutMs: 20_000 });
  assert.deepEqual(
    la.message.map((m) => m.seq),
    [1, 2, 3, 4],
  );
  assert.deepEqual(
    lb.message.map((m) => m.seq),
    [1, 2],
  );
  assert.deepEqual([la.gap.length, lb.gap.length, la.error.length, lb.error.length], [0, 0, 0, 0]);
  assert.equal(sockets.length, 2, "one socket, reconnected once");
  // A queued publish made while down is sent once after the reconnect.
  client.close();
});

test("Node: read positions go to the user's other tabs, and unread follows", async () => {
  const room = roomName("unread");
  await api(edge, "POST", `/rooms/${room}/messages`, [{ data: 1 }, { data: 2 }, { data: 3 }, { data: 4 }]);
  const one = nodeClient("kim").client.join(room, { rewind: 4 });
  const other = nodeClient("kim");
  const two = other.client.join(room);
  const log = record(two);
  await until(() => one.lastSeq === 4 && two.state === "open", { what: "both tabs in the room" });
  assert.equal(two.unread, 4);
  one.markRead(3);
  await until(() => log.read.length === 1, { what: "the read position on the other tab" });
  assert.deepEqual(log.read[0], { seq: 3, unread: 1 });
  assert.equal(two.readSeq, 3);
  assert.throws(() => one.markRead(-1), TypeError);
});

test("Node: a kick leaves one room; the socket and the other rooms stay; watch reports unread counts", async () => {
  const [kicked, kept, side] = [roomName("kicked"), roomName("kept"), roomName("side")];
  const { client, sockets } = nodeClient("lena");
  const rk = client.join(kicked);
  const rkept = client.join(kept);
  const lk = record(rk);
  await until(() => rk.state === "open" && rkept.state === "open", { what: "rooms open" });
  await api(edge, "POST", `/rooms/${kicked}/kick`, { user: "lena", banSeconds: 60, reason: "spam" });
  await until(() => rk.state === "closed", { what: "the kicked room closed" });
  assert.deepEqual([lk.status.at(-1).code, lk.status.at(-1).reason], [4411, "spam"]);
  assert.equal(await rkept.publish("still here"), 1);
  assert.equal(client.status, "open");
  // A sidebar room: its seq and unread count, without joining.
  const heads = [];
  client.on("watch", (w) => heads.push(w));
  await api(edge, "POST", `/rooms/${side}/messages`, [{ data: 1 }, { data: 2 }]);
  client.watch([side]);
  await until(() => heads.some((h) => h.room === side && h.seq === 2), { what: "the watched room's head" });
  assert.deepEqual(
    client.rooms().find((r) => r.room === side),
    { room: side, seq: 2, readSeq: 0, unread: 2 },
  );
  assert.equal(sockets.length, 1);
  client.close();
});

test("Node: leave() leaves the room for the others too; joining again at once opens it again", async () => {
  const room = roomName("rejoin");
  const { client } = nodeClient("lea");
  const presence = async () => (await api(edge, "GET", `/rooms/${room}/presence`)).json.members.map((m) => m.user);
  const first = client.join(room);
  await until(() => first.state === "open", { what: "the first join open" });
  assert.deepEqual(await presence(), ["lea"]);
  first.leave();
  await until(async () => (await presence()).length === 0, { what: "the room's presence without lea after leave()" });
  // leave and join in one task (a React remount): the session's answer to the leave must not
  // end the new join
  const again = client.join(room);
  await until(() => again.state === "open", { what: "the second join open" });
  again.leave();
  const third = client.join(room);
  const log = record(third);
  await until(() => third.state === "open", { what: "the third join open" });
  assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, { data: "after" })).status, 200);
  await until(() => log.message.length === 1, { what: "a message after rejoining" });
  assert.deepEqual(await presence(), ["lea"]);
  assert.deepEqual(
    log.status.map((s) => s.state),
    ["connecting", "open"],
    "the third join neither closed nor reconnected",
  );
});
