// The SDK's JavaScript layer, unit-tested in plain Node: the built package (sdk/dist/index.js, the
// file users get, minified, with the wasm inlined) with a fake WebSocket and a fake clock passed
// through the `WebSocket` and `clock` options. No server, no browser, no real time: each test
// plays the room by hand and moves the clock itself.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { before, describe, test } from "node:test";
import { FakeClock, fakeSockets, flush, message, welcome } from "./fakes.mjs";

const DIST = new URL("../dist/index.js", import.meta.url);
let connect, RoomcastError;
before(async () => {
  ({ connect, RoomcastError } = await import(DIST));
});

/** A room on fake sockets and a fake clock, recording its events; started (the microtask ran). */
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
  const log = { status: [], error: [], message: [], presence: [], gap: [], direct: [] };
  for (const e of Object.keys(log)) room.on(e, (p) => log[e].push(p));
  await flush();
  return { room, clock, log, ...fake };
}

/** Opens the newest socket with a welcome. */
function openWith(ws, w = welcome(0)) {
  ws.open();
  ws.receive(w);
}

const publishes = (ws) => ws.frames.filter((f) => f.type === "publish");
const rejection = (promise) =>
  promise.then(
    () => assert.fail("expected a rejection"),
    (e) => e,
  );

describe("connect", () => {
  test("opens a socket to the room's URL with the client id, the subprotocols and errors=close; a welcome opens it", async () => {
    const { room, log, sockets, last } = await setup({ token: "tok" });
    assert.equal(sockets.length, 1);
    const ws = last();
    assert.equal(ws.url.origin + ws.url.pathname, "wss://rooms.example/rooms/chat:lobby/ws");
    assert.deepEqual(
      [ws.url.searchParams.get("cid"), ws.url.searchParams.get("errors"), ws.url.searchParams.get("since")],
      ["me", "close", null],
    );
    assert.deepEqual(ws.protocols, ["roomcast.v1", "bearer.tok"]);
    assert.equal(room.state, "connecting");
    openWith(ws, welcome(4, { members: [{ user: "bob", connections: 1 }] }));
    assert.equal(room.state, "open");
    assert.equal(room.lastSeq, 4);
    assert.deepEqual(
      log.status.map((s) => s.state),
      ["connecting", "open"],
    );
    assert.deepEqual(
      room.members().map((m) => m.user),
      ["bob"],
    );
    assert.deepEqual(
      log.presence[0].joined.map((m) => m.user),
      ["bob"],
    );
    room.close();
  });

  test("room names are checked before connecting, by the server's rule: a clear TypeError", () => {
    const clock = new FakeClock();
    const { FakeSocket, sockets } = fakeSockets();
    const open = (name) => connect({ url: "https://rooms.example", room: name, WebSocket: FakeSocket, clock });
    for (const bad of ["a b", "a/b", "caf\u00e9", "x".repeat(129), "room?x=1", "#", "a%20b"]) {
      assert.throws(
        () => open(bad),
        (e) => e instanceof TypeError && /invalid room name/.test(e.message) && /1-128/.test(e.message),
        bad,
      );
    }
    for (const good of ["x".repeat(128), "chat:lobby", "a.b_c-d:E9"]) open(good).close();
    assert.equal(sockets.length, 0, "nothing was opened");
    assert.throws(
      () => connect({ url: "https://rooms.example", room: "r", clientId: "has space", WebSocket: FakeSocket, clock }),
      /invalid clientId/,
    );
  });

  test("without a WebSocket (Node 20 has none) connect() says to pass one; a bad clock is refused", () => {
    const had = globalThis.WebSocket;
    try {
      globalThis.WebSocket = undefined;
      assert.throws(() => connect({ url: "https://rooms.example", room: "r" }), /pass one as the WebSocket option/);
    } finally {
      globalThis.WebSocket = had;
    }
    const { FakeSocket } = fakeSockets();
    assert.throws(
      () => connect({ url: "https://rooms.example", room: "r", WebSocket: FakeSocket, clock: { now: () => 0 } }),
      /clock needs/,
    );
  });

  test("each connect() draws its own client id unless the app passes one", async () => {
    const a = await setup({ clientId: undefined });
    const b = await setup({ clientId: undefined });
    assert.match(a.room.clientId, /^[0-9a-f]{24}$/);
    assert.notEqual(a.room.clientId, b.room.clientId);
    assert.equal(a.last().url.searchParams.get("cid"), a.room.clientId);
    a.room.close();
    b.room.close();
  });
});

describe("publish", () => {
  test("resolves with the seq on the ack; frames start with type then id", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const p = room.publish({ text: "hi" });
    const sent = ws.sent[0];
    const { id } = JSON.parse(sent);
    assert.ok(sent.startsWith(`{"type":"publish","id":"${id}",`), sent);
    ws.receive({ type: "ack", id, seq: 1 });
    assert.equal(await p, 1);
    assert.equal(room.lastSeq, 1);
    room.close();
  });

  test("a read mark is echoed at once, and only a plain id (docs/PROTOCOL.md, Read marks)", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(ws);
    const before = ws.sent.length;
    ws.receive({ type: "mark", id: "0a1b2c3d4e5f6071" });
    await flush();
    assert.deepEqual(ws.sent.slice(before), ['{"type":"read","id":"0a1b2c3d4e5f6071"}']);
    ws.receive({ type: "mark", id: 'x"y' });
    await flush();
    assert.equal(ws.sent.length, before + 1, "an id the encoder would have to escape is not echoed");
    assert.deepEqual(log.error, [], "a mark is no error");
    room.close();
  });

  test("a refusal from the room rejects with its code and message, and is never resent after a reconnect", async () => {
    const { room, clock, log, last } = await setup({ minReconnectDelayMs: 100, maxReconnectDelayMs: 100 });
    const ws = last();
    openWith(ws);
    const refused = room.publish("no");
    const kept = room.publish("yes");
    const [a, b] = publishes(ws);
    ws.receive({ type: "error", id: a.id, code: "forbidden", message: "this token may not publish here" });
    const e = await rejection(refused);
    assert.ok(e instanceof RoomcastError);
    assert.deepEqual([e.name, e.code, e.message, e.id], ["RoomcastError", "forbidden", "this token may not publish here", a.id]);
    assert.deepEqual(log.error, [], "a refusal that settles a call is not also an error event");
    // the connection drops before `kept` is acknowledged: only `kept` goes out again
    ws.serverClose(1006);
    await clock.advance(100);
    const ws2 = last();
    assert.notEqual(ws2, ws);
    openWith(ws2, welcome(0, { resume: { status: "recovered", replayed: 0 } }));
    assert.deepEqual(
      publishes(ws2).map((f) => f.id),
      [b.id],
    );
    ws2.receive({ type: "ack", id: b.id, seq: 1 });
    assert.equal(await kept, 1);
    room.close();
  });

  test("a publish over the default frame limit (65536) is refused before the first welcome and never sent", async () => {
    const { room, last } = await setup();
    const big = room.publish("x".repeat(65_536));
    const small = room.publish("y");
    const e = await rejection(big);
    assert.deepEqual([e.code, e.name], ["too_large", "RoomcastError"]);
    assert.match(e.message, /65536 bytes/);
    const ws = last();
    openWith(ws);
    assert.deepEqual(
      publishes(ws).map((f) => f.data),
      ["y"],
      "only the one that fits was sent",
    );
    ws.receive({ type: "ack", id: publishes(ws)[0].id, seq: 1 });
    assert.equal(await small, 1);
    room.close();
  });

  test("the welcome's limits.maxFrameBytes is the limit: queued and new publishes over it are refused locally", async () => {
    const { room, last } = await setup();
    const queued = room.publish("q".repeat(3_000));
    const ws = last();
    openWith(ws, welcome(0, { limits: { maxFrameBytes: 1_024 } }));
    const e = await rejection(queued);
    assert.equal(e.code, "too_large");
    const later = await rejection(room.publish("z".repeat(1_100)));
    assert.equal(later.code, "too_large");
    assert.match(later.message, /1024 bytes/);
    const direct = await rejection(room.sendTo({ user: "bob" }, "z".repeat(1_100)));
    assert.equal(direct.code, "too_large");
    assert.deepEqual(ws.sent, [], "nothing over the limit was sent");
    room.close();
  });

  test("a direct message whose socket drops before the answer rejects as disconnected", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const p = room.sendTo({ user: "bob" }, "hello");
    ws.serverClose(1006);
    const e = await rejection(p);
    assert.equal(e.code, "disconnected");
    assert.match(e.message, /may or may not have been delivered/);
    room.close();
  });

  test("sendInput sends a terminal's input to its agent; the room's refusal rejects it", async () => {
    const { room, last } = await setup();
    const ws = last();
    openWith(ws);
    const p = room.sendInput({ clientId: "agent" }, { keys: "ls\r" });
    const f = ws.frames.at(-1);
    assert.deepEqual([f.type, f.to, f.data], ["input", { clientId: "agent" }, { keys: "ls\r" }]);
    ws.receive({ type: "ack", id: f.id });
    assert.equal(await p, undefined);
    const refused = room.sendInput({ clientId: "agent" }, { resize: [30, 100] });
    const g = ws.frames.at(-1);
    assert.deepEqual([g.type, g.data], ["input", { resize: [30, 100] }]);
    ws.receive({ type: "error", id: g.id, code: "forbidden", message: "this token may not type into this room" });
    const e = await rejection(refused);
    assert.deepEqual([e.code, e.message], ["forbidden", "this token may not type into this room"]);
    const direct = room.sendTo({ user: "bob" }, 1);
    assert.equal(ws.frames.at(-1).type, "direct", "sendTo still sends a direct message");
    ws.receive({ type: "ack", id: ws.frames.at(-1).id });
    await direct;
    room.close();
  });

  test("a final close rejects what is pending with the close code and reason", async () => {
    const { room, last } = await setup();
    const p = room.publish(1);
    last().serverClose(4403, "the token does not grant this room");
    const e = await rejection(p);
    assert.deepEqual([e.code, e.closeCode, e.message], ["closed", 4403, "the room is closed: the token does not grant this room"]);
    const after = await rejection(room.publish(2));
    assert.deepEqual([after.code, after.closeCode], ["closed", 4403]);
  });
});

describe("reconnect", () => {
  test("a dropped connection reconnects after at least minReconnectDelayMs and resumes from lastSeq", async () => {
    const { room, clock, log, sockets, last } = await setup({ minReconnectDelayMs: 1_000, maxReconnectDelayMs: 30_000 });
    openWith(last(), welcome(3));
    last().receive(message(4), message(5));
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [4, 5],
    );
    const queued = room.publish("offline");
    const id = publishes(last())[0].id;
    last().serverClose(1006);
    const s = log.status.at(-1);
    assert.deepEqual([s.state, s.code, s.reason], ["reconnecting", 1006, "connection lost"]);
    assert.ok(s.delayMs >= 1_000 && s.delayMs <= 2_000, `${s.delayMs} ms: at least the minimum, within the first window`);
    await clock.advance(s.delayMs - 1);
    assert.equal(sockets.length, 1, "not a millisecond early");
    await clock.advance(1);
    assert.equal(sockets.length, 2);
    const ws2 = last();
    assert.deepEqual([ws2.url.searchParams.get("since"), ws2.url.searchParams.get("epoch")], ["5", "e1"]);
    openWith(ws2, welcome(7, { resume: { status: "recovered", replayed: 2 } }));
    ws2.receive(message(6), message(7), message(6));
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [4, 5, 6, 7],
      "replayed once, duplicates dropped",
    );
    assert.deepEqual(
      publishes(ws2).map((f) => f.id),
      [id],
      "the queued publish resent with its id",
    );
    ws2.receive({ type: "ack", id, seq: 8 });
    assert.equal(await queued, 8);
    room.close();
  });

  test("with full jitter no reconnect comes sooner than minReconnectDelayMs", async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { room, log, last } = await setup({ seed, minReconnectDelayMs: 500 });
      last().serverClose(1006);
      const { delayMs } = log.status.at(-1);
      assert.ok(delayMs >= 500 && delayMs <= 1_000, `seed ${seed}: ${delayMs} ms`);
      room.close();
    }
  });

  test("4400-4499 are final: closed with the server's reason (or the table's), nothing left running", async () => {
    for (const [code, reason, shown] of [
      [4400, "room name may only contain A-Z a-z 0-9 _ - . :", null],
      [4400, "", "bad request"],
      [4409, "", "room full"],
    ]) {
      const { room, clock, log, sockets, last } = await setup();
      last().serverClose(code, reason);
      assert.deepEqual(log.status.at(-1), { state: "closed", attempt: 0, delayMs: 0, code, reason: shown ?? reason });
      assert.equal(room.state, "closed");
      assert.deepEqual(room._resources(), [0, 0, 0]);
      assert.equal(clock.timers.size, 0);
      await clock.advance(600_000);
      assert.equal(sockets.length, 1, "never retried");
    }
  });

  test("the SDK's own drops are 4000 with their reason: no welcome in time, no pong in time", async () => {
    const { room, clock, log, last } = await setup({
      connectTimeoutMs: 1_000,
      pingIntervalMs: 2_000,
      pongTimeoutMs: 500,
      minReconnectDelayMs: 10,
      maxReconnectDelayMs: 10,
    });
    await clock.advance(1_000);
    assert.deepEqual([log.status.at(-1).code, log.status.at(-1).reason], [4000, "connect timeout"]);
    await clock.advance(10);
    openWith(last());
    await clock.advance(2_000);
    assert.deepEqual(last().frames.at(-1), { type: "ping" });
    await clock.advance(500);
    assert.deepEqual(
      [log.status.at(-1).state, log.status.at(-1).code, log.status.at(-1).reason],
      ["reconnecting", 4000, "heartbeat missed"],
    );
    assert.deepEqual(last().closedWith, { code: 1000, reason: "heartbeat missed" });
    room.close();
  });
});

describe("server frames", () => {
  test("unknown frame types are ignored silently; what follows them is handled", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(ws);
    ws.receive({ type: "poll", from: "x", data: 1 }, { type: "from-the-future", anything: [1, 2] }, message(1));
    assert.deepEqual(log.error, []);
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [1],
    );
    room.close();
  });

  test("a line that is not JSON, or a known type with a wrong shape, is a bad_frame error event", async () => {
    const { room, log, last } = await setup();
    const ws = last();
    openWith(ws);
    ws.receive("this is not json", { type: "message", seq: "2", from: "x", user: "y" }, "[1,2]", message(1));
    assert.deepEqual(
      log.error.map((e) => [e.code, e.message]),
      [
        ["bad_frame", "not JSON"],
        ["bad_frame", "invalid message frame"],
        ["bad_frame", "not a frame"],
      ],
    );
    assert.equal(log.error[0].frame, "this is not json");
    assert.deepEqual(
      log.message.map((m) => m.seq),
      [1],
      "the connection goes on",
    );
    room.close();
  });

  test("the client pings every min(pingIntervalMs, the welcome's heartbeat.interval)", async () => {
    const { room, clock, last } = await setup({ pingIntervalMs: 20_000 });
    const ws = last();
    openWith(ws, welcome(0, { heartbeat: { interval: 5_000, timeout: 15_000 } }));
    await clock.advance(4_999);
    assert.deepEqual(ws.sent, []);
    await clock.advance(1);
    assert.deepEqual(ws.frames, [{ type: "ping" }]);
    ws.receive({ type: "pong" });
    await clock.advance(5_000);
    assert.equal(ws.frames.length, 2);
    room.close();
    // a room that asks for less often does not slow the client's own interval
    const other = await setup({ pingIntervalMs: 3_000 });
    openWith(other.last(), welcome(0, { heartbeat: { interval: 20_000, timeout: 60_000 } }));
    await other.clock.advance(3_000);
    assert.deepEqual(other.last().frames, [{ type: "ping" }]);
    other.room.close();
  });
});

describe("tokens", () => {
  test("a token function is called before every attempt, and refreshes the open connection's token before it expires", async () => {
    let calls = 0;
    const { room, clock, last } = await setup({
      token: async () => `h.p.t${++calls}`,
      minReconnectDelayMs: 10,
      maxReconnectDelayMs: 10,
      pingIntervalMs: 1e9,
    });
    await flush();
    const ws = last();
    assert.equal(ws.bearer, "h.p.t1");
    const expires = clock.now() + 100_000;
    openWith(ws, welcome(0, { expires, heartbeat: { interval: 1e9, timeout: 3e9 } }));
    const refreshes = () => ws.frames.filter((f) => f.type === "refresh");
    // a fifth of the remaining life early
    await clock.advance(80_000 - 1);
    assert.deepEqual(refreshes(), []);
    await clock.advance(1);
    assert.deepEqual(refreshes(), [{ type: "refresh", token: "h.p.t2" }]);
    ws.receive({ type: "refreshed", expires: clock.now() + 100_000 });
    ws.serverClose(4002, "token expired");
    await clock.advance(10);
    await flush();
    assert.equal(last().bearer, "h.p.t3");
    room.close();
  });

  test("a token function that throws, rejects or returns no string: an error event with the app's error as cause; after 5 in a row, closed", async () => {
    const boom = new Error("login service down");
    const answers = [
      () => {
        throw boom;
      },
      () => Promise.reject(boom),
      () => undefined,
      () => ({ token: "x" }),
      () => {
        throw boom;
      },
    ];
    let calls = 0;
    const { room, clock, log, sockets } = await setup({
      token: () => answers[calls++](),
      minReconnectDelayMs: 10,
      maxReconnectDelayMs: 10,
      maxTokenFailures: 5,
    });
    const pending = rejection(room.publish("waiting"));
    for (let i = 0; i < 5; i++) {
      await flush();
      await clock.advance(10);
    }
    assert.equal(calls, 5);
    assert.equal(sockets.length, 0, "no socket without a token");
    assert.deepEqual(
      log.error.map((e) => e.code),
      ["token_failed", "token_failed", "token_failed", "token_failed", "token_failed"],
    );
    assert.equal(log.error[0].cause, boom);
    assert.match(log.error[0].message, /login service down/);
    assert.equal(log.error[1].cause, boom);
    assert.match(log.error[2].message, /resolved to undefined, not a string/);
    assert.deepEqual(log.error[3].cause, { token: "x" });
    assert.deepEqual(
      log.status.slice(1, -1).map((s) => [s.state, s.code, s.reason]),
      Array(4).fill(["reconnecting", 4000, "token fetch failed"]),
    );
    assert.deepEqual(
      [log.status.at(-1).state, log.status.at(-1).code, log.status.at(-1).reason],
      ["closed", 4000, "token fetch failed too many times in a row"],
    );
    const e = await pending;
    assert.deepEqual([e.code, e.closeCode, e.cause], ["closed", 4000, boom]);
    assert.equal(e.message, "the room is closed: token fetch failed too many times in a row");
    assert.deepEqual(room._resources(), [0, 0, 0]);
    assert.equal(clock.timers.size, 0);
  });

  test("a successful fetch resets the count; maxTokenFailures sets the bound", async () => {
    const script = [false, false, true, false, false, false];
    let calls = 0;
    const { room, clock, log, last } = await setup({
      token: async () => {
        if (!script[calls++]) throw new Error("no");
        return "h.p.ok";
      },
      maxTokenFailures: 3,
      minReconnectDelayMs: 10,
      maxReconnectDelayMs: 10,
    });
    for (let i = 0; i < 3; i++) {
      await flush();
      await clock.advance(10);
    }
    assert.equal(last()?.bearer, "h.p.ok");
    last().serverClose(1006);
    for (let i = 0; i < 4; i++) {
      await flush();
      await clock.advance(10);
    }
    assert.equal(calls, 6);
    assert.equal(log.status.at(-1).state, "closed", "three failures in a row after the success");
    assert.equal(room.state, "closed");
  });
});

describe("host robustness", () => {
  test("a WebSocket that throws reaches the app as an error event; other connections keep working", async () => {
    const boom = new Error("send exploded");
    const shared = new FakeClock();
    const bad = fakeSockets();
    class Throwing extends bad.FakeSocket {
      send() {
        throw boom;
      }
    }
    const a = await setup({ WebSocket: Throwing, clock: shared });
    const b = await setup({ clock: shared });
    openWith(bad.last());
    openWith(b.last());
    const lost = rejection(a.room.publish("a"));
    assert.equal(a.log.error[0]?.code, "host_error");
    assert.equal(a.log.error[0].cause, boom);
    assert.match(a.log.error[0].message, /send exploded/);
    // the other connection, in the same wasm instance, is unaffected
    const ok = b.room.publish("b");
    const [f] = publishes(b.last());
    b.last().receive({ type: "ack", id: f.id, seq: 1 }, message(2));
    assert.equal(await ok, 1);
    assert.deepEqual(
      b.log.message.map((m) => m.seq),
      [2],
    );
    // and the throwing one still works as far as it can: it is still open and settles its calls
    bad.last().receive(message(1));
    assert.deepEqual(
      a.log.message.map((m) => m.seq),
      [1],
    );
    a.room.close();
    assert.equal((await lost).code, "closed");
    b.room.close();
  });

  test("a WebSocket constructor that throws closes the room for good, with the error as the cause", async () => {
    const refused = new SyntaxError("The subprotocol is invalid");
    class Refusing {
      constructor() {
        throw refused;
      }
    }
    const { room, clock, log } = await setup({ WebSocket: Refusing });
    assert.equal(log.error[0].code, "host_error");
    assert.equal(log.error[0].cause, refused);
    assert.deepEqual(
      [log.status.at(-1).state, log.status.at(-1).code, log.status.at(-1).reason],
      ["closed", 4000, "the WebSocket could not be created"],
    );
    const e = await rejection(room.publish(1));
    assert.deepEqual([e.closeCode, e.cause], [4000, refused]);
    assert.equal(clock.timers.size, 0);
  });

  test("each connection holds exactly one timer, and replacing it cancels only the old one", async () => {
    const { room, clock, last } = await setup({ pingIntervalMs: 1_000, pongTimeoutMs: 300 });
    assert.equal(clock.timers.size, 1, "the connect timeout");
    openWith(last());
    assert.equal(clock.timers.size, 1, "the ping timer replaced it");
    for (let i = 0; i < 5; i++) {
      await clock.advance(1_000);
      last().receive({ type: "pong" });
      assert.equal(clock.timers.size, 1);
    }
    assert.equal(last().frames.filter((f) => f.type === "ping").length, 5, "the live timer is never the one cancelled");
    assert.deepEqual(room._resources(), [1, 1, 2]);
    room.close();
    assert.equal(clock.timers.size, 0);
    assert.deepEqual(room._resources(), [0, 0, 0]);
  });
});

describe("RoomcastError", () => {
  test("keeps its name in the minified bundle", async () => {
    assert.equal(RoomcastError.name, "RoomcastError");
    const { room } = await setup();
    room.close();
    const e = await rejection(room.publish(1));
    assert.ok(e instanceof RoomcastError && e instanceof Error);
    assert.equal(e.constructor.name, "RoomcastError");
    assert.match(String(e.stack), /^RoomcastError: /);
    // the bundle is minified (the check above is not vacuous)
    assert.ok(!/\n {2}#emit\(/.test(readFileSync(DIST, "utf8")));
  });
});
