// Phones and flaky networks (issue #24), in plain Node on the built package: a fake page (window
// events, a document with a visibility state, navigator.onLine), fake sockets, a fake clock.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { FakeClock, fakeSockets, flush, welcome } from "./fakes.mjs";

const DIST = new URL("../dist/index.js", import.meta.url);
let connect, createClient;
const page = new EventTarget();
const doc = Object.assign(new EventTarget(), { visibilityState: "visible" });
let onLine = true;
const saved = {};
before(async () => {
  for (const k of ["addEventListener", "removeEventListener", "document", "navigator"])
    saved[k] = Object.getOwnPropertyDescriptor(globalThis, k);
  globalThis.addEventListener = page.addEventListener.bind(page);
  globalThis.removeEventListener = page.removeEventListener.bind(page);
  Object.defineProperty(globalThis, "document", { value: doc, configurable: true, writable: true });
  Object.defineProperty(globalThis, "navigator", {
    value: {
      get onLine() {
        return onLine;
      },
    },
    configurable: true,
    writable: true,
  });
  ({ connect, createClient } = await import(DIST));
});
after(() => {
  for (const [k, d] of Object.entries(saved)) {
    if (d) Object.defineProperty(globalThis, k, d);
    else delete globalThis[k];
  }
});

const fire = (target, type) => target.dispatchEvent(new Event(type));
/** A compact JWS as the token endpoint would answer. */
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2ln";

async function setup(options = {}, clock = new FakeClock(), fake = fakeSockets()) {
  const room = connect({ url: "https://rooms.example", room: "r", clientId: "me", WebSocket: fake.FakeSocket, clock, seed: 3, ...options });
  const log = { status: [], error: [] };
  for (const e of Object.keys(log)) room.on(e, (p) => log[e].push(p));
  await flush();
  return { room, clock, log, ...fake };
}

const openWith = (ws, w = welcome(0)) => {
  ws.open();
  ws.receive(w);
};

describe("tokens", () => {
  test("a token function answering an HTTP error body: token_failed with its first bytes, never sent, counted", async () => {
    const body = "<!doctype html><title>400 Bad Request</title><p>name must be an id, not Mary Ann</p>";
    const { room, clock, log, sockets } = await setup({
      token: async () => body,
      maxTokenFailures: 2,
      minReconnectDelayMs: 10,
      maxReconnectDelayMs: 10,
    });
    await flush();
    assert.equal(sockets.length, 0, "never sent as a token");
    assert.equal(log.error[0].code, "token_failed");
    assert.equal(log.error[0].cause, body);
    assert.ok(log.error[0].message.includes(JSON.stringify(body.slice(0, 40))), log.error[0].message);
    assert.ok(!log.error[0].message.includes("Mary Ann"), "only the first bytes");
    await clock.advance(10);
    await flush();
    assert.deepEqual([room.state, log.status.at(-1).reason], ["closed", "token fetch failed too many times in a row"]);
  });

  test("fetches that cannot reach their server, or fail offline, do not count; online retries at once", async () => {
    let calls = 0;
    let answer = () => Promise.reject(new TypeError("Failed to fetch"));
    const { room, clock, log, last } = await setup({
      token: () => {
        calls++;
        return answer();
      },
      maxTokenFailures: 2,
    });
    const queued = room.publish("sent offline");
    for (let i = 0; i < 20; i++) {
      await clock.advance(30_000);
      await flush();
    }
    assert.ok(calls >= 12, `${calls} fetches`);
    assert.equal(room.state, "reconnecting", "unreachable: never counted");
    onLine = false;
    fire(page, "offline");
    answer = () => Promise.reject(new Error("503"));
    for (let i = 0; i < 10; i++) {
      await clock.advance(30_000);
      await flush();
    }
    assert.equal(room.state, "reconnecting", "offline: never counted");
    const before = calls;
    answer = async () => JWT;
    onLine = true;
    fire(page, "online");
    await flush();
    assert.equal(calls, before + 1, "online: fetched at once, no backoff");
    openWith(last());
    const [f] = last().frames.filter((x) => x.type === "publish");
    assert.equal(f.data, "sent offline");
    last().receive({ type: "ack", id: f.id, seq: 1 });
    assert.equal(await queued, 1);
    assert.ok(log.error.every((e) => e.code === "token_failed"));
    room.close();
  });
});

describe("liveness", () => {
  test("offline, online, visible and pageshow each check the link: no pong within 4 s and the room reconnects", async () => {
    for (const [target, type] of [
      [page, "offline"],
      [page, "online"],
      [doc, "visibilitychange"],
      [page, "pageshow"],
    ]) {
      const { room, clock, log, last } = await setup({ token: JWT });
      openWith(last());
      if (type === "visibilitychange") {
        doc.visibilityState = "hidden";
        fire(doc, type);
        doc.visibilityState = "visible";
      }
      const pings = () => last().sent.filter((t) => t === '{"type":"ping"}').length;
      const n = pings();
      fire(target, type);
      assert.equal(pings(), n + 1, type);
      await clock.advance(3_999);
      assert.equal(room.state, "open");
      await clock.advance(1);
      assert.equal(room.state, "reconnecting", type);
      assert.equal(log.status.at(-1).reason, "heartbeat missed");
      room.close();
    }
  });

  test("visible, a silent link is dropped within 8 s; hidden, within the room's interval plus 10 s", async () => {
    for (const [state, bound] of [
      ["visible", 8_000],
      ["hidden", 30_000],
    ]) {
      doc.visibilityState = state;
      const { room, clock, last } = await setup({ token: JWT });
      openWith(last());
      await clock.advance(bound - 1);
      assert.equal(room.state, "open", state);
      await clock.advance(1);
      assert.equal(room.state, "reconnecting", state);
      room.close();
    }
    doc.visibilityState = "visible";
  });

  test("room.reconnect() tries at once; a room that reconnects nudges the page's other rooms", async () => {
    const clock = new FakeClock();
    const fake = fakeSockets();
    const rooms = [];
    for (let i = 0; i < 3; i++) rooms.push(await setup({ token: JWT, room: `r${i}`, seed: i }, clock, fake));
    const socketOf = (r) => fake.sockets.filter((s) => s.url.pathname.endsWith(`/r${rooms.indexOf(r)}/ws`)).at(-1);
    for (const r of rooms) openWith(socketOf(r));
    // an outage: every room waiting out a backoff, no socket
    for (const r of rooms) socketOf(r).serverClose(1006);
    assert.deepEqual(
      rooms.map((r) => [r.room.state, socketOf(r).readyState]),
      Array(3).fill(["reconnecting", 3]),
    );
    const count = fake.sockets.length;
    rooms[0].room.reconnect();
    assert.equal(fake.sockets.length, count + 1, "reconnect(): a socket at once");
    openWith(fake.last());
    await flush();
    assert.equal(fake.sockets.length, count + 3, "the other two tried at once");
    for (const r of rooms.slice(1)) openWith(socketOf(r));
    assert.deepEqual(
      rooms.map((r) => r.room.state),
      ["open", "open", "open"],
    );
    for (const r of rooms) r.room.close();
  });

  test("createClient: the session socket follows the page too; client.reconnect() and a joined room's reconnect() try at once", async () => {
    const clock = new FakeClock();
    const fake = fakeSockets();
    const client = createClient({ url: "https://rooms.example", token: JWT, WebSocket: fake.FakeSocket, clock, seed: 5 });
    await flush();
    const room = client.join("a");
    fake.last().open();
    fake.last().receive({ type: "session", user: "u", clientId: "c", expires: clock.now() + 3_600_000 });
    fake.last().serverClose(1006);
    const n = fake.sockets.length;
    room.reconnect();
    assert.equal(fake.sockets.length, n + 1);
    fake.last().open();
    fake.last().receive({ type: "session", user: "u", clientId: "c", expires: clock.now() + 3_600_000 });
    fire(page, "offline");
    assert.ok(fake.last().sent.includes('{"type":"ping"}'), "offline: checked");
    await clock.advance(4_000);
    assert.equal(client.status, "reconnecting");
    client.close();
  });
});

describe("a session socket that drops again before it opens (issue #23)", () => {
  // A room's backoff ran out while the session's socket was down: its join waited for the socket.
  // That socket failed too, which ended the join; the join must not go out on the next socket
  // anyway (the room, backing off again, then joined a second time: "already joined; leave
  // first", and the room stayed closed until its connect timeout, 10 s after the restart).
  test("a join that waited on a failed socket does not go out on the next; each room joins once and opens", async () => {
    const clock = new FakeClock();
    const fake = fakeSockets();
    const client = createClient({ url: "https://rooms.example", token: JWT, WebSocket: fake.FakeSocket, clock, seed: 7 });
    await flush();
    // Each room backs off on its own (its own seed, as each draws its own jitter in a page).
    const rooms = ["a", "b", "c"].map((name, i) => client.join(name, { seed: 100 + i }));
    const session = () => ({ type: "session", user: "u", clientId: "c", expires: clock.now() + 3_600_000 });
    const joined = (room) => ({ ...welcome(0), type: "joined", room });
    const joins = (ws) => ws.frames.filter((f) => f.type === "join").map((f) => f.room);
    fake.last().open();
    fake.last().receive(session());
    await flush();
    assert.deepEqual(joins(fake.last()), ["a", "b", "c"]);
    for (const name of ["a", "b", "c"]) fake.last().receive(joined(name));
    assert.deepEqual(
      rooms.map((r) => r.state),
      ["open", "open", "open"],
    );
    // The runtime goes away: the socket drops, and each next attempt fails at once, while the
    // rooms' own backoffs run out (each then waits for the session's socket with its join).
    fake.last().serverClose(1006);
    for (let failed = 0; failed < 4; ) {
      const n = fake.sockets.length;
      await clock.advance(100);
      if (fake.sockets.length > n) {
        fake.last().serverClose(1006);
        failed++;
      }
    }
    // The runtime is back: the next attempt opens.
    const n = fake.sockets.length;
    while (fake.sockets.length === n) await clock.advance(100);
    const ws = fake.last();
    ws.open();
    ws.receive(session());
    await flush();
    // The session answers each join in order: `joined`, or (a room this device joined already)
    // the error it sends then. Every room must be open within 5 s, having joined once.
    const answered = new Set();
    for (let sent = 0, t = 0; t < 5_000; t += 100) {
      for (const room of joins(ws).slice(sent)) {
        ws.receive(answered.has(room) ? { type: "error", room, code: "bad_frame", message: "already joined; leave first" } : joined(room));
        answered.add(room);
      }
      sent = joins(ws).length;
      await clock.advance(100);
    }
    assert.deepEqual(joins(ws).sort(), ["a", "b", "c"], "one join per room on the new socket");
    assert.deepEqual(
      rooms.map((r) => r.state),
      ["open", "open", "open"],
    );
    client.close();
  });
});

describe("retryAfterMs", () => {
  test("a rate_limited refusal rejects with the room's retryAfterMs; a 4029 naming its wait is not retried sooner", async () => {
    const { room, log, last } = await setup({ token: JWT });
    openWith(last());
    const p = room.publish("fast").catch((e) => e);
    const [f] = last().frames.filter((x) => x.type === "publish");
    last().receive({ type: "error", id: f.id, code: "rate_limited", message: "slow down", retryAfterMs: 120 });
    const e = await p;
    assert.deepEqual([e.code, e.retryAfterMs], ["rate_limited", 120]);
    last().serverClose(4029, "read budget exceeded; retry later; retryAfterMs=45000");
    const s = log.status.at(-1);
    assert.equal(s.state, "reconnecting");
    assert.ok(s.delayMs >= 45_000, `${s.delayMs}`);
    room.close();
  });
});
