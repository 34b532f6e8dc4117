// The built SDK package (sdk/dist, in Node) against a scripted fake room: a `ws` server that speaks
// the protocol and sends exactly what each test tells it to, including what the real room never
// sends any more (frames that claim a future seq, lines that are not JSON, frames of the wrong
// shape). The SDK must report every frame it cannot trust as an `error` (or a `gap`) and go on
// delivering the room's real messages, in order, each once. The SDK runs on the `ws` package's
// WebSocket, passed as an option, as a Node 20 app would (no --experimental-websocket needed).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import { until } from "../harness.mjs";

let connect;
before(async () => {
  ({ connect } = await import("../../sdk/dist/index.js"));
});

/** One connection the SDK opened to the fake room. */
class FakeConn {
  constructor(ws, req) {
    this.ws = ws;
    this.query = new URL(req.url, "http://fake").searchParams;
    this.bearer = (req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((p) => p.trim())
      .find((p) => p.startsWith("bearer."))
      ?.slice(7);
    this.frames = [];
    ws.on("message", (data) => this.frames.push(JSON.parse(String(data))));
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
  }

  /** Sends one WebSocket message: the frames (objects, or raw text lines) joined by line feeds. */
  send(...lines) {
    this.ws.send(lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n"));
  }
}

/** A `ws` server selecting `roomcast.v1`; `next()` resolves with each connection in turn. */
async function fakeRoom() {
  const waiting = [];
  const arrived = [];
  const server = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    handleProtocols: (p) => (p.has("roomcast.v1") ? "roomcast.v1" : false),
  });
  server.on("connection", (ws, req) => {
    const conn = new FakeConn(ws, req);
    if (waiting.length) waiting.shift()(conn);
    else arrived.push(conn);
  });
  await new Promise((r) => server.once("listening", r));
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    next: () => (arrived.length ? Promise.resolve(arrived.shift()) : new Promise((r) => waiting.push(r))),
    close() {
      for (const ws of server.clients) ws.terminate();
      return new Promise((r) => server.close(r));
    },
  };
}

const ME = "me";
const message = (seq, from = "other") => ({
  type: "message",
  seq,
  from,
  user: `u-${from}`,
  id: `m${seq}`,
  data: { n: seq },
  ts: Date.now(),
});
const welcome = (seq, more = {}) => ({ type: "welcome", epoch: "e1", seq, clientId: ME, user: `u-${ME}`, members: [], ...more });

/** Connects the package to `url` and records its events. */
function open(url, options = {}) {
  const room = connect({
    url,
    room: "fake",
    clientId: ME,
    WebSocket,
    minReconnectDelayMs: 10,
    maxReconnectDelayMs: 50,
    pingIntervalMs: 600_000,
    ...options,
  });
  const log = { message: [], error: [], status: [], gap: [] };
  for (const e of Object.keys(log)) room.on(e, (p) => log[e].push(p));
  return { room, log };
}

let server;
before(async () => {
  server = await fakeRoom();
});
after(async () => {
  await server?.close();
});

test("a frame claiming a future seq and lines that are not frames are errors; real messages keep arriving", async () => {
  const { room, log } = open(server.url);
  const c1 = await server.next();
  assert.equal(c1.query.get("since"), null, "a first connection has no resume point");
  c1.send(welcome(3));
  c1.send(message(4));
  await until(() => log.message.length === 1, { what: "message 4" });
  // lines that are not frames the SDK can act on: each one an error, the connection stays; a frame
  // of a type the SDK does not know is ignored silently (forward compatibility)
  c1.send("this is not json");
  c1.send({ type: "message", seq: "5", from: "other", user: "u-other", data: 0 });
  c1.send({ type: "surprise" });
  // a real message, then one claiming seq 999999 (what the raw-line-feed forgery did), then more
  // on the same socket: the SDK drops that socket and resumes from 5
  c1.send(message(5), message(999_999, "alice"), message(6));
  const closed = await c1.closed;
  assert.deepEqual(closed, { code: 1000, reason: "message out of order" });

  // the room went on: 6 from someone else, 7 this client's own (echo off), both replayed on resume
  const c2 = await server.next();
  assert.deepEqual([c2.query.get("since"), c2.query.get("epoch")], ["5", "e1"], "resumes from the last real seq");
  c2.send(welcome(7, { resume: { status: "recovered", replayed: 2 } }), message(6), message(7, ME));
  c2.send(message(8));
  await until(() => log.message.some((m) => m.seq === 8), { what: "message 8" });

  assert.deepEqual(
    log.message.map((m) => m.seq),
    [4, 5, 6, 8],
    "every real message once, in order; the own message (7) not delivered",
  );
  assert.ok(log.message.every((m) => m.from === "other"));
  assert.equal(room.lastSeq, 8, "the own message still moved lastSeq on");
  const errors = log.error.map((e) => [e.code, e.message]);
  assert.deepEqual(errors.slice(0, 2), [
    ["bad_frame", "not JSON"],
    ["bad_frame", "invalid message frame"],
  ]);
  assert.equal(log.error[0].frame, "this is not json");
  assert.deepEqual(
    log.error.slice(2).map(({ code, expected, received }) => ({ code, expected, received })),
    [{ code: "out_of_order", expected: 6, received: 999_999 }],
  );
  assert.equal(log.error.length, 3, "nothing for the unknown type");
  assert.deepEqual(
    log.status.map((s) => [s.state, s.code, s.reason]),
    [
      ["connecting", 0, ""],
      ["open", 0, ""],
      ["reconnecting", 4000, "message out of order"],
      ["open", 0, ""],
    ],
  );
  assert.deepEqual(log.gap, []);
  room.close();
});

test("a welcome behind what the client saw is a gap, and the room's messages from there are delivered", async () => {
  const { room, log } = open(server.url);
  const c1 = await server.next();
  c1.send(welcome(0), message(1), message(2), message(3));
  await until(() => log.message.length === 3, { what: "three messages" });
  c1.ws.close(4000, "going away");
  // the room lost its last messages but kept its epoch, and claims it recovered the resume
  const c2 = await server.next();
  assert.equal(c2.query.get("since"), "3");
  c2.send(welcome(1, { resume: { status: "recovered", replayed: 0 } }));
  c2.send(message(2));
  await until(() => log.message.length === 4, { what: "the room's new message 2" });
  assert.deepEqual(log.gap, [{ reason: "ahead", since: 3 }]);
  assert.deepEqual(
    log.message.map((m) => m.seq),
    [1, 2, 3, 2],
  );
  assert.equal(room.lastSeq, 2);
  room.close();
});

// (token functions answer compact-JWS-shaped tokens: anything else is a token_failed)
test("a token function refreshes the token on the open connection; a refused refresh is an error; 4002 reconnects with a fresh token", async () => {
  let calls = 0;
  const { room, log } = open(server.url, { token: async () => `h.p.t${++calls}` });
  const c1 = await server.next();
  assert.equal(c1.bearer, "h.p.t1");
  // a short-lived token: refreshed a fifth of its life before it expires
  const expires = Date.now() + 1_000;
  c1.send(welcome(0, { expires }));
  await until(() => c1.frames.some((f) => f.type === "refresh"), { what: "a refresh frame" });
  const at = Date.now();
  assert.deepEqual(
    c1.frames.filter((f) => f.type === "refresh"),
    [{ type: "refresh", token: "h.p.t2" }],
  );
  assert.ok(at >= expires - 200 - 50 && at < expires, `refreshed ${expires - at} ms before expiry`);
  // the room took it: the next refresh is timed from the new expiry
  c1.send({ type: "refreshed", expires: Date.now() + 500 });
  await until(() => c1.frames.filter((f) => f.type === "refresh").length === 2, { what: "a second refresh" });
  assert.equal(c1.frames.at(-1).token, "h.p.t3");
  // the room refuses it: an error event, and the connection goes on until the room closes it
  c1.send({ type: "error", code: "forbidden", message: "the fresh token does not grant this room" });
  await until(() => log.error.length === 1, { what: "the refusal" });
  assert.deepEqual([log.error[0].code, log.error[0].message], ["forbidden", "the fresh token does not grant this room"]);
  assert.equal(room.state, "open");
  // expired: 4002 is retryable, and the new attempt gets a fresh token
  c1.ws.close(4002, "token expired");
  const c2 = await server.next();
  assert.equal(c2.bearer, "h.p.t4");
  const reconnecting = log.status.find((s) => s.state === "reconnecting");
  assert.deepEqual([reconnecting.code, reconnecting.reason], [4002, "token expired"]);
  c2.send(welcome(0, { expires: Date.now() + 3_600_000 }));
  await until(() => room.state === "open", { what: "open again" });
  room.close();
});

for (const [code, reason] of [
  [4410, "too many connections for this user"],
  [4411, "removed from the room"],
  [4412, "client id belongs to another user"],
]) {
  test(`close code ${code} is final: closed with its reason, no reconnect`, async () => {
    const { room, log } = open(server.url);
    const c1 = await server.next();
    c1.send(welcome(0));
    await until(() => room.state === "open", { what: "open" });
    c1.ws.close(code, reason);
    await until(() => room.state === "closed", { what: "closed" });
    assert.deepEqual([log.status.at(-1).code, log.status.at(-1).reason], [code, reason]);
    // no timer left means no reconnect can come
    assert.deepEqual(room._resources(), [0, 0, 0], "no socket, timer or listener left");
  });
}

test("a publish the room refuses is rejected with the room's code and message and never resent after a reconnect", async () => {
  const { room } = open(server.url);
  const c1 = await server.next();
  c1.send(welcome(0));
  await until(() => room.state === "open", { what: "open" });
  const refused = room.publish("refused").then(
    () => null,
    (e) => e,
  );
  const kept = room.publish("kept");
  await until(() => c1.frames.filter((f) => f.type === "publish").length === 2, { what: "two publishes" });
  const [a, b] = c1.frames.filter((f) => f.type === "publish");
  c1.send({ type: "error", id: a.id, code: "rate_limited", message: "too many messages per second; slow down" });
  const e = await refused;
  assert.deepEqual([e?.name, e?.code, e?.message], ["RoomcastError", "rate_limited", "too many messages per second; slow down"]);
  c1.ws.close(4029, "too many errors");
  const c2 = await server.next();
  c2.send(welcome(0, { resume: { status: "recovered", replayed: 0 } }));
  await until(() => c2.frames.some((f) => f.type === "publish"), { what: "the resent publish" });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(
    c2.frames.filter((f) => f.type === "publish").map((f) => f.id),
    [b.id],
    "only the unanswered one is resent",
  );
  c2.send({ type: "ack", id: b.id, seq: 1 });
  assert.equal(await kept, 1);
  room.close();
});

test("close code 4400 is final and says why: the edge's reason, or the table's", async () => {
  for (const [reason, shown] of [
    ["room name may only contain A-Z a-z 0-9 _ - . :", "room name may only contain A-Z a-z 0-9 _ - . :"],
    ["", "bad request"],
  ]) {
    const { room, log } = open(server.url);
    const c1 = await server.next();
    c1.ws.close(4400, reason);
    await until(() => room.state === "closed", { what: "closed" });
    assert.deepEqual([log.status.at(-1).code, log.status.at(-1).reason], [4400, shown]);
    assert.deepEqual(room._resources(), [0, 0, 0]);
  }
});
