// Issue #15's SDK calls and events, unit-tested like sdk.test.mjs: the built package (sdk/dist)
// with a fake WebSocket and a fake clock, each test playing the room by hand. history(), rewind,
// broadcast(), setPresence(), message ids, and the debug/logger option.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { FakeClock, fakeSockets, flush, message, welcome } from "./fakes.mjs";

const DIST = new URL("../dist/index.js", import.meta.url);
let connect, RoomcastError;
before(async () => {
  ({ connect, RoomcastError } = await import(DIST));
});

async function setup(options = {}) {
  const clock = new FakeClock();
  const fake = fakeSockets();
  const room = connect({
    url: "https://rooms.example",
    room: "chat:lobby",
    clientId: "me",
    WebSocket: fake.FakeSocket,
    clock,
    seed: 7,
    ...options,
  });
  const log = { status: [], error: [], message: [], presence: [], broadcast: [] };
  for (const e of Object.keys(log)) room.on(e, (p) => log[e].push(p));
  await flush();
  return { room, clock, log, ...fake };
}

function openWith(ws, w = welcome(0)) {
  ws.open();
  ws.receive(w);
}

const ofType = (ws, type) => ws.frames.filter((f) => f.type === type);
const rejection = (promise) =>
  promise.then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e) => e,
  );
/** Whether a promise has settled yet (after pending callbacks ran). */
async function settled(promise) {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await flush();
  return done;
}
const FAST = { minReconnectDelayMs: 10, maxReconnectDelayMs: 10 };

describe("history", () => {
  test("a request frame (type then id first) answered by the room's page: messages in seq order with their ids, and more", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(ws, welcome(9));
    const p = room.history({ limit: 3 });
    const [req] = ofType(ws, "history");
    assert.deepEqual(req, { type: "history", id: req.id, limit: 3 });
    assert.ok(ws.sent[0].startsWith(`{"type":"history","id":"${req.id}"`), ws.sent[0]);
    ws.receive({ type: "history", id: req.id, messages: [message(7), message(8), { ...message(9), id: undefined }], more: true });
    const page = await p;
    assert.deepEqual(
      page.messages.map((m) => [m.seq, m.id]),
      [
        [7, "m7"],
        [8, "m8"],
        [9, undefined],
      ],
    );
    assert.deepEqual(page.messages[0], { seq: 7, from: "other", user: "u-other", id: "m7", data: { n: 7 }, ts: 1 });
    assert.ok(!("id" in page.messages[2]), "no id key when the publisher gave none");
    assert.equal(page.more, true);
    assert.deepEqual(log.message, [], "a page is not delivered as live messages");
    assert.equal(room.lastSeq, 9, "and does not move lastSeq");
    room.close();
  });

  test("before and since go into the frame; neither asks for the latest page", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    for (const page of [{ before: 40, limit: 10 }, { since: 0 }, undefined]) room.history(page).catch(() => {});
    assert.deepEqual(
      ofType(ws, "history").map(({ id, ...rest }) => rest),
      [{ type: "history", before: 40, limit: 10 }, { type: "history", since: 0 }, { type: "history" }],
    );
    const ids = ofType(ws, "history").map((f) => f.id);
    assert.equal(new Set(ids).size, 3, "each call its own id");
    room.close();
  });

  test("bad options reject with a TypeError and send nothing", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    for (const bad of [{ before: 3, since: 1 }, { limit: -1 }, { limit: 2.5 }, { before: "9" }, { since: NaN }]) {
      const e = await rejection(room.history(bad));
      assert.ok(e instanceof TypeError, JSON.stringify(bad));
    }
    assert.deepEqual(ws.sent, []);
    room.close();
  });

  test("not open: rejects offline, nothing queued; closed: rejects closed", async () => {
    const { room, last } = await setup();
    const e = await rejection(room.history());
    assert.ok(e instanceof RoomcastError);
    assert.equal(e.code, "offline");
    const ws = last();
    openWith(ws);
    assert.deepEqual(ws.sent, [], "the offline call was not sent later");
    room.close();
    const c = await rejection(room.history());
    assert.deepEqual([c.code, c.closeCode], ["closed", 1000]);
  });

  test("the room's refusal rejects with its code and message; a malformed answer with bad_frame", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(ws);
    const refused = room.history();
    const malformed = room.history();
    const notArray = room.history();
    const [a, b, c] = ofType(ws, "history").map((f) => f.id);
    ws.receive({ type: "error", id: a, code: "rate_limited", message: "read budget exceeded; retry after 300 ms" });
    ws.receive({ type: "history", id: b, messages: [{ seq: "1", from: "x", user: "y" }], more: false });
    ws.receive({ type: "history", id: c, more: false });
    const e = await rejection(refused);
    assert.deepEqual([e.code, e.message, e.id], ["rate_limited", "read budget exceeded; retry after 300 ms", a]);
    assert.equal((await rejection(malformed)).code, "bad_frame");
    assert.equal((await rejection(notArray)).code, "bad_frame");
    assert.deepEqual(log.error, [], "each refusal settled its call and is not also an error event");
    room.close();
  });

  test("a socket that drops before the answer rejects disconnected; close() rejects closed; a late answer is ignored", async () => {
    const { room, clock, log, last } = await setup(FAST);
    const ws = last();
    openWith(ws);
    const lost = room.history();
    const id = ofType(ws, "history")[0].id;
    ws.serverClose(1006);
    const e = await rejection(lost);
    assert.equal(e.code, "disconnected");
    await clock.advance(10);
    const ws2 = last();
    openWith(ws2, welcome(0, { resume: { status: "recovered", replayed: 0 } }));
    assert.deepEqual(ofType(ws2, "history"), [], "not resent");
    ws2.receive({ type: "history", id, messages: [], more: false });
    assert.deepEqual(log.error, []);
    const pending = room.history();
    room.close();
    assert.equal((await rejection(pending)).code, "closed");
  });
});

describe("rewind", () => {
  test("the first connection asks for the last N; they arrive as message events before live ones, no gap, no duplicate", async () => {
    const { room, log, last } = await setup({ rewind: 3 });
    const ws = last();
    assert.equal(ws.url.searchParams.get("rewind"), "3");
    openWith(ws, welcome(10, { rewind: { replayed: 3 } }));
    assert.equal(room.lastSeq, 7, "welcome.seq - replayed");
    ws.receive(message(8), message(9), message(10), message(10), message(11));
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [8, 9, 10, 11],
    );
    assert.deepEqual(log.error, []);
    assert.equal(room.lastSeq, 11);
    room.close();
  });

  test("reconnects resume instead; a connection that never opened rewinds again", async () => {
    const { room, clock, log, last, sockets } = await setup({ rewind: 2, ...FAST });
    sockets[0].serverClose(1006);
    await clock.advance(10);
    assert.equal(sockets[1].url.searchParams.get("rewind"), "2", "no welcome yet: still no resume point");
    openWith(sockets[1], welcome(5, { rewind: { replayed: 2 } }));
    sockets[1].receive(message(4), message(5));
    sockets[1].serverClose(1006);
    await clock.advance(10);
    const ws = last();
    assert.deepEqual(
      [ws.url.searchParams.get("rewind"), ws.url.searchParams.get("since"), ws.url.searchParams.get("epoch")],
      [null, "5", "e1"],
    );
    openWith(ws, welcome(6, { resume: { status: "recovered", replayed: 1 } }));
    ws.receive(message(6));
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [4, 5, 6],
      "every message once",
    );
    room.close();
  });

  test("with echo off, own rewound messages move lastSeq but are not delivered; rewind 0 or unset asks for nothing", async () => {
    const { room, log, last } = await setup({ rewind: 2 });
    openWith(last(), welcome(2, { rewind: { replayed: 2 } }));
    last().receive(message(1, "me"), message(2));
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [2],
    );
    assert.equal(room.lastSeq, 2);
    room.close();
    for (const rewind of [0, undefined]) {
      const s = await setup({ rewind });
      assert.equal(s.last().url.searchParams.get("rewind"), null);
      s.room.close();
    }
  });

  test("a rewind that is not a whole number is a TypeError from connect()", () => {
    const { FakeSocket, sockets } = fakeSockets();
    for (const rewind of [-1, 1.5, "10", NaN, Infinity]) {
      assert.throws(
        () => connect({ url: "https://r.example", room: "r", WebSocket: FakeSocket, clock: new FakeClock(), rewind }),
        TypeError,
        String(rewind),
      );
    }
    assert.equal(sockets.length, 0);
  });
});

describe("broadcast", () => {
  test("by default sends a broadcast frame without an id and resolves once sent; a refusal is an error event", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const errors = [];
    room.on("error", (e) => errors.push(e));
    assert.equal(await room.broadcast({ x: 1 }), undefined);
    assert.deepEqual(
      ws.sent.map((t) => JSON.parse(t)),
      [{ type: "broadcast", data: { x: 1 } }],
    );
    ws.receive({ type: "error", code: "rate_limited", message: "too many broadcasts per second; slow down" });
    assert.deepEqual(
      errors.map((e) => e.code),
      ["rate_limited"],
    );
    room.close();
  });

  test("with { ack: true } sends a broadcast frame (type then id first) and resolves on the room's ack", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const p = room.broadcast({ typing: true }, { ack: true });
    const [f] = ofType(ws, "broadcast");
    assert.deepEqual(f, { type: "broadcast", id: f.id, data: { typing: true } });
    assert.ok(ws.sent[0].startsWith(`{"type":"broadcast","id":"${f.id}",`));
    assert.equal(await settled(p), false, "not before the ack");
    ws.receive({ type: "ack", id: f.id });
    assert.equal(await p, undefined);
    room.close();
  });

  test("not open: rejects offline and is never sent later (not queued)", async () => {
    const { room, clock, last } = await setup(FAST);
    const e = await rejection(room.broadcast(1));
    assert.equal(e.code, "offline");
    last().serverClose(1006);
    await clock.advance(10);
    openWith(last());
    assert.deepEqual(ofType(last(), "broadcast"), []);
    room.close();
    assert.equal((await rejection(room.broadcast(1))).code, "closed");
  });

  test("over the welcome's limits.broadcastMaxBytes (the whole frame, in UTF-8 bytes): too_large, never sent", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws, welcome(0, { limits: { maxFrameBytes: 65_536, broadcastMaxBytes: 100 } }));
    // {"type":"broadcast","data":"…"}: 29 bytes around the string
    const frame = (s) => JSON.stringify({ type: "broadcast", data: s }).length;
    const fits = "x".repeat(100 - frame(""));
    const e = await rejection(room.broadcast(`${fits}x`));
    assert.equal(e.code, "too_large");
    assert.match(e.message, /101 bytes, over the room's limit \(100 bytes\)/);
    const multibyte = await rejection(room.broadcast("\u00e9".repeat(40))); // 80 bytes, 40 characters
    assert.equal(multibyte.code, "too_large");
    assert.deepEqual(ws.sent, []);
    room.broadcast(fits).catch(() => {});
    assert.equal(ofType(ws, "broadcast").length, 1, "one at the limit goes");
    room.close();
  });

  test("with { ack: true }, refusals reject with the room's code and message; a drop before the ack rejects disconnected", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const limited = room.broadcast(1, { ack: true });
    ws.receive({
      type: "error",
      id: ofType(ws, "broadcast")[0].id,
      code: "rate_limited",
      message: "too many broadcasts per second; slow down",
    });
    const e = await rejection(limited);
    assert.deepEqual([e.code, e.message], ["rate_limited", "too many broadcasts per second; slow down"]);
    const lost = room.broadcast(2, { ack: true });
    ws.serverClose(1006);
    const d = await rejection(lost);
    assert.equal(d.code, "disconnected");
    assert.match(d.message, /may or may not have been delivered/);
    room.close();
  });

  test("broadcast events carry from, user, data, ts; never move lastSeq; own ones only with echo", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(ws, welcome(4));
    ws.receive(
      { type: "broadcast", from: "tab-2", user: "bob", data: { x: 1 }, ts: 5 },
      { type: "broadcast", from: "me", user: "u-me", data: 2, ts: 6 },
      message(5),
    );
    assert.deepEqual(log.broadcast, [{ from: "tab-2", user: "bob", data: { x: 1 }, ts: 5 }]);
    assert.equal(room.lastSeq, 5);
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [5],
    );
    room.close();
    const echo = await setup({ echo: true });
    openWith(echo.last());
    echo.last().receive({ type: "broadcast", from: "me", user: "u-me", data: 2, ts: 6 });
    assert.deepEqual(
      echo.log.broadcast.map((b) => b.data),
      [2],
    );
    // a broadcast frame without from/user is a bad_frame, not an event
    echo.last().receive({ type: "broadcast", data: 3 });
    assert.equal(echo.log.broadcast.length, 1);
    assert.equal(echo.log.error[0].code, "bad_frame");
    echo.room.close();
  });
});

describe("setPresence", () => {
  test("meta must be a plain object: TypeError otherwise, nothing sent", async () => {
    const { room, last } = await setup();
    openWith(last());
    class Cursor {
      constructor() {
        this.x = 1;
      }
    }
    for (const bad of [null, undefined, "away", 3, [1, 2], new Cursor(), new Date(0), new Map()]) {
      const e = await rejection(room.setPresence(bad));
      assert.ok(e instanceof TypeError, String(bad));
    }
    const cyclic = {};
    cyclic.self = cyclic;
    assert.ok((await rejection(room.setPresence(cyclic))) instanceof TypeError);
    assert.deepEqual(last().sent, []);
    room.setPresence(Object.assign(Object.create(null), { ok: true })).catch(() => {});
    assert.deepEqual(
      ofType(last(), "presence").map((f) => f.meta),
      [{ ok: true }],
    );
    room.close();
  });

  test("over limits.presenceMetaMax (compact JSON bytes): too_large, not sent", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws, welcome(0, { limits: { maxFrameBytes: 65_536, presenceMetaMax: 20 } }));
    const e = await rejection(room.setPresence({ name: "x".repeat(20) }));
    assert.equal(e.code, "too_large");
    assert.match(e.message, /31 bytes, over the room's limit \(20 bytes\)/);
    assert.deepEqual(ws.sent, []);
    room.setPresence({ name: "x".repeat(9) }).catch(() => {}); // {"name":"xxxxxxxxx"}: 20 bytes
    assert.equal(ofType(ws, "presence").length, 1);
    room.close();
  });

  test("sends a presence frame, resolves on the ack; members() and presence events follow the room's update", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(
      ws,
      welcome(0, {
        members: [
          { user: "u-me", connections: 1, meta: { name: "Me" } },
          { user: "bob", connections: 1 },
        ],
      }),
    );
    const p = room.setPresence({ name: "Me", status: "away" });
    const [f] = ofType(ws, "presence");
    assert.ok(ws.sent[0].startsWith(`{"type":"presence","id":"${f.id}","meta":`), ws.sent[0]);
    assert.deepEqual(f.meta, { name: "Me", status: "away" });
    ws.receive({ type: "ack", id: f.id });
    assert.equal(await p, undefined);
    // the room's coalesced update reaches everyone, this connection too
    ws.receive({ type: "presence", event: "update", member: { user: "u-me", connections: 1, meta: { name: "Me", status: "away" } } });
    ws.receive({ type: "presence", event: "update", member: { user: "bob", connections: 1, meta: { cursor: [3, 4] } } });
    assert.deepEqual(
      room.members().map((m) => [m.user, m.meta]),
      [
        ["u-me", { name: "Me", status: "away" }],
        ["bob", { cursor: [3, 4] }],
      ],
    );
    const e = log.presence.at(-1);
    assert.deepEqual([e.joined, e.left, e.updated.map((m) => m.user)], [[], [], ["bob"]]);
    assert.equal(e.members.length, 2);
    room.close();
  });

  test("one change in flight at a time, the newest wins: a fast loop costs one frame per round trip and every call resolves", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const calls = Array.from({ length: 10 }, (_, i) => room.setPresence({ x: i }));
    assert.deepEqual(
      ofType(ws, "presence").map((f) => f.meta),
      [{ x: 0 }],
      "the rest wait for the answer",
    );
    ws.receive({ type: "ack", id: ofType(ws, "presence")[0].id });
    assert.equal(await settled(calls[0]), true);
    assert.equal(await settled(calls[1]), false);
    assert.deepEqual(
      ofType(ws, "presence").map((f) => f.meta),
      [{ x: 0 }, { x: 9 }],
      "then only the newest",
    );
    ws.receive({ type: "ack", id: ofType(ws, "presence")[1].id });
    await Promise.all(calls);
    assert.equal(ofType(ws, "presence").length, 2);
    room.close();
  });

  test("not open yet: it waits, goes out on open and resolves on the ack", async () => {
    const { room, last } = await setup();
    const p = room.setPresence({ status: "here" });
    assert.deepEqual(last().sent, []);
    assert.equal(await settled(p), false);
    openWith(last());
    const [f] = ofType(last(), "presence");
    assert.deepEqual(f.meta, { status: "here" });
    last().receive({ type: "ack", id: f.id });
    await p;
    room.close();
  });

  test("a reconnect sends the last meta again (a new connection starts with the token's); one in flight at the drop resolves on the next connection", async () => {
    const { room, clock, log, last } = await setup(FAST);
    openWith(last());
    await Promise.all([
      room.setPresence({ v: 1 }),
      (async () => {
        await flush();
        last().receive({ type: "ack", id: ofType(last(), "presence")[0].id });
      })(),
    ]);
    // the connection drops: the applied meta goes again, with no call waiting for it
    last().serverClose(1006);
    await clock.advance(10);
    openWith(last(), welcome(0, { resume: { status: "recovered", replayed: 0 } }));
    assert.deepEqual(
      ofType(last(), "presence").map((f) => f.meta),
      [{ v: 1 }],
    );
    last().receive({ type: "ack", id: ofType(last(), "presence")[0].id });
    // in flight when the socket goes: not rejected, sent again, resolved by the new socket's ack
    const p = room.setPresence({ v: 2 });
    const sentOn = last();
    sentOn.serverClose(1006);
    assert.equal(await settled(p), false);
    await clock.advance(10);
    openWith(last(), welcome(0, { resume: { status: "recovered", replayed: 0 } }));
    assert.notEqual(last(), sentOn);
    const [again] = ofType(last(), "presence");
    assert.deepEqual(again.meta, { v: 2 });
    last().receive({ type: "ack", id: again.id });
    await p;
    assert.deepEqual(log.error, []);
    room.close();
  });

  test("a refusal rejects the waiting calls with the room's code; a refused resend after a reconnect is an error event", async () => {
    const { room, clock, log, last } = await setup(FAST);
    openWith(last());
    const first = room.setPresence({ v: 1 });
    last().receive({ type: "ack", id: ofType(last(), "presence")[0].id });
    await first;
    const refused = room.setPresence({ v: 2 });
    last().receive({
      type: "error",
      id: ofType(last(), "presence")[1].id,
      code: "forbidden",
      message: "this token may not send to this room",
    });
    const e = await rejection(refused);
    assert.deepEqual([e.code, e.message], ["forbidden", "this token may not send to this room"]);
    // the room kept {v: 1}; after a reconnect that is what goes again, and its refusal is reported
    last().serverClose(1006);
    await clock.advance(10);
    openWith(last(), welcome(0, { resume: { status: "recovered", replayed: 0 } }));
    const [resent] = ofType(last(), "presence");
    assert.deepEqual(resent.meta, { v: 1 });
    last().receive({ type: "error", id: resent.id, code: "rate_limited", message: "too many broadcasts per second; slow down" });
    assert.deepEqual(
      log.error.map((x) => [x.code, x.id]),
      [["rate_limited", resent.id]],
    );
    room.close();
  });

  test("close() rejects what waits, connected or not", async () => {
    const early = await setup();
    const waiting = early.room.setPresence({ a: 1 });
    early.room.close();
    assert.equal((await rejection(waiting)).code, "closed");
    const { room, last } = await setup();
    openWith(last());
    const inflight = room.setPresence({ a: 1 });
    const queued = room.setPresence({ a: 2 });
    room.close();
    assert.deepEqual([(await rejection(inflight)).code, (await rejection(queued)).code], ["closed", "closed"]);
    assert.equal((await rejection(room.setPresence({ a: 3 }))).code, "closed");
    // and a connection that was never started closes with nothing left over
    const never = connect({ url: "https://r.example", room: "r", WebSocket: fakeSockets().FakeSocket, clock: new FakeClock() });
    const p = never.setPresence({ a: 1 });
    never.close();
    assert.equal((await rejection(p)).code, "closed");
  });
});

describe("message ids", () => {
  test("message events carry the publisher's id when it gave one", async () => {
    const { room, log, last } = await setup();
    openWith(last());
    last().receive(message(1), { type: "message", seq: 2, from: ":api", user: ":api", data: 2, ts: 3 });
    assert.deepEqual(log.message[0], { seq: 1, from: "other", user: "u-other", id: "m1", data: { n: 1 }, ts: 1 });
    assert.deepEqual(log.message[1], { seq: 2, from: ":api", user: ":api", data: 2, ts: 3 });
    room.close();
  });
});

describe("debug and logger", () => {
  test("logger gets connects, frames both ways, closes and status changes; never a token", async () => {
    const entries = [];
    let calls = 0;
    const { room, clock, last } = await setup({
      token: async () => `h.p.secret-${++calls}`,
      logger: (kind, detail) => entries.push([kind, detail]),
      pingIntervalMs: 1e9,
    });
    await flush();
    const ws = last();
    openWith(ws, welcome(0, { expires: clock.now() + 100_000, heartbeat: { interval: 1e9, timeout: 3e9 } }));
    room.broadcast("hi").catch(() => {});
    await clock.advance(80_000); // the refresh
    assert.ok(
      ws.frames.some((f) => f.type === "refresh" && f.token === "h.p.secret-2"),
      "the real frame carries the token",
    );
    room.close();
    const kinds = entries.map(([k]) => k);
    for (const k of ["connect", "send", "receive", "status", "close"]) assert.ok(kinds.includes(k), `${k} in ${kinds}`);
    assert.match(entries.find(([k]) => k === "connect")[1], /^wss:\/\/rooms\.example\/rooms\/chat:lobby\/ws\?/);
    assert.ok(entries.some(([k, d]) => k === "send" && d.startsWith('{"type":"broadcast"')));
    assert.ok(entries.some(([k, d]) => k === "receive" && JSON.parse(d).type === "welcome"));
    assert.deepEqual(
      entries.filter(([k]) => k === "status").map(([, s]) => s.state),
      ["connecting", "open", "closed"],
    );
    assert.ok(
      entries.some(([k, d]) => k === "send" && d.startsWith('{"type":"refresh"')),
      "the refresh is logged",
    );
    assert.ok(!JSON.stringify(entries).includes("secret-"), "no token in the log");
    // a socket closed by the server is logged too
    const other = [];
    const s = await setup({ logger: (k, d) => other.push([k, d]), ...FAST });
    s.last().serverClose(4001, "heartbeat timeout");
    assert.deepEqual(other.find(([k]) => k === "closed")[1], { code: 4001, reason: "heartbeat timeout" });
    s.room.close();
  });

  test("debug: true logs to console.debug; off by default it logs nothing and the app's WebSocket is used as is", async () => {
    const original = console.debug;
    const lines = [];
    console.debug = (...a) => lines.push(a);
    try {
      const off = await setup();
      openWith(off.last());
      assert.ok(off.last() instanceof off.FakeSocket);
      assert.equal(typeof off.last().onmessage, "function", "the SDK's own handler sits on the app's socket");
      off.room.close();
      assert.deepEqual(lines, []);
      const on = await setup({ debug: true });
      openWith(on.last());
      on.room.close();
      assert.ok(lines.length > 0);
      assert.equal(lines[0][0], "roomcast chat:lobby:");
      assert.ok(lines.some((l) => l[1] === "receive"));
    } finally {
      console.debug = original;
    }
    const { FakeSocket } = fakeSockets();
    assert.throws(
      () => connect({ url: "https://r.example", room: "r", WebSocket: FakeSocket, clock: new FakeClock(), logger: "yes" }),
      TypeError,
    );
  });
});

describe("a logger that throws", () => {
  test("costs no frame: messages are still delivered and calls settle", async () => {
    // what the SDK rethrows on its own (in a microtask) is caught here instead of by the runner
    const thrown = [];
    const native = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (f) =>
      native(() => {
        try {
          f();
        } catch (e) {
          thrown.push(e);
        }
      });
    try {
      const { room, log, last } = await setup({
        logger: () => {
          throw new Error("log sink down");
        },
      });
      openWith(last());
      last().receive(message(1));
      const p = room.history();
      last().receive({ type: "history", id: ofType(last(), "history")[0].id, messages: [message(1)], more: false });
      assert.deepEqual(
        (await p).messages.map((m) => m.seq),
        [1],
      );
      assert.deepEqual(
        log.message.map((m) => m.seq),
        [1],
      );
      assert.equal(room.state, "open");
      room.close();
      await flush();
      assert.ok(thrown.length > 0 && thrown.every((e) => e.message === "log sink down"), "rethrown on its own");
    } finally {
      globalThis.queueMicrotask = native;
    }
  });
});

describe("limits", () => {
  test("room.limits: the server's defaults before a welcome, then the welcome's", async () => {
    const { room, last } = await setup();
    assert.deepEqual(room.limits, { maxFrameBytes: 65_536, presenceMetaMax: 1_024, broadcastMaxBytes: 16_384 });
    openWith(
      last(),
      welcome(0, {
        limits: { maxFrameBytes: 1_000, presenceMetaMax: 10, broadcastMaxBytes: 500, broadcastsPerSec: 30, broadcastsBurst: 60 },
      }),
    );
    assert.deepEqual(room.limits, {
      maxFrameBytes: 1_000,
      presenceMetaMax: 10,
      broadcastMaxBytes: 500,
      broadcastsPerSec: 30,
      broadcastsBurst: 60,
    });
    room.limits.maxFrameBytes = 1;
    assert.equal(room.limits.maxFrameBytes, 1_000, "a copy");
    room.close();
  });
});
