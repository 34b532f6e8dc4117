// The SDK's Rust half (sdk/pkg/roomcast_sdk.wasm, as built) driven through its raw imports and
// exports, without host.js: what the wasm does when the host misbehaves, and which resource each
// handle releases.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { before, test } from "node:test";

const WASM = new URL("../pkg/roomcast_sdk.wasm", import.meta.url);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

let module;
before(async () => {
  module = await WebAssembly.compile(readFileSync(WASM));
});

/**
 * An instance with a scripted host: sockets and timers get ids of their own, every import call is
 * logged, and `throwOn(name, conn)` makes an import throw for one connection.
 */
async function instance() {
  const log = [];
  const live = { sockets: new Map(), timers: new Map(), listeners: new Map() };
  const throwing = new Set();
  const clock = { t: 1_000_000 };
  let nextId = 1000;
  let exports;
  const text = (ptr, len) => decoder.decode(new Uint8Array(exports.memory.buffer, ptr, len));
  const connOf = (id) => [...Object.values(live)].map((m) => m.get(id)).find((c) => c !== undefined);
  const maybeThrow = (name, conn) => {
    if (throwing.has(`${name}:${conn}`)) throw new Error(`${name} threw for connection ${conn}`);
  };
  const host = {
    now: () => clock.t,
    ws_open(conn) {
      const id = nextId++;
      live.sockets.set(id, conn);
      log.push(["open", conn, id]);
      return id;
    },
    ws_join(conn, ptr, len) {
      const id = nextId++;
      live.sockets.set(id, conn);
      log.push(["join", conn, id, text(ptr, len)]);
      return id;
    },
    ws_send(socket, ptr, len) {
      const conn = live.sockets.get(socket);
      maybeThrow("ws_send", conn);
      log.push(["send", conn, socket, text(ptr, len)]);
    },
    ws_close(socket) {
      log.push(["close", live.sockets.get(socket), socket]);
      live.sockets.delete(socket);
    },
    timer_set(conn, delay) {
      const id = nextId++;
      live.timers.set(id, conn);
      log.push(["timer", conn, id, delay]);
      return id;
    },
    wake_listen(conn) {
      const id = nextId++;
      live.listeners.set(id, conn);
      return id;
    },
    release(id) {
      const conn = connOf(id);
      assert.ok(conn !== undefined, `release(${id}) of a resource that is not live`);
      log.push(["release", conn, id]);
      for (const m of Object.values(live)) m.delete(id);
    },
    fetch_token() {},
    emit_status(conn, state, _attempt, _delay, code, ptr, len) {
      log.push(["status", conn, state, code, text(ptr, len)]);
    },
    emit_gap() {},
    emit_out_of_order() {},
    emit_settled(conn, call, seq) {
      log.push(["settled", conn, call, seq]);
    },
    give(ptr, len) {
      log.push(["give", text(ptr, len)]);
    },
  };
  exports = (await WebAssembly.instantiate(module, { host })).exports;
  const str = (s) => {
    const b = encoder.encode(s);
    const ptr = exports.alloc(b.length);
    new Uint8Array(exports.memory.buffer, ptr, b.length).set(b);
    return [ptr, b.length];
  };
  const w = exports;
  return {
    w,
    log,
    live,
    str,
    clock,
    throwOn: (name, conn) => throwing.add(`${name}:${conn}`),
    start: (conn) => w.conn_new(conn, conn, 0, NaN, NaN, NaN, 1, NaN, NaN, NaN, NaN, NaN, NaN, ...str(""), NaN, 0),
    welcome: (conn) => w.conn_welcome(conn, ...str("e1"), 0, 0, ...str(""), NaN, NaN, NaN),
    // conn_event 0: publish (protocol/src/client/abi.rs EVENTS)
    publish: (conn, json) => w.conn_event(conn, 0, ...str(json), ...str("")),
    // 11: timer (fired), 10: closed (socket, code, reason)
    timer: (conn, timer) => w.conn_event(conn, 11, ...str(""), ...str(""), timer),
    closed: (conn, socket, code) => w.conn_event(conn, 10, ...str(""), ...str(""), socket, code),
    lastSeq: (conn) => w.conn_event(conn, 14, ...str(""), ...str("")),
  };
}

test("an import that throws through the wasm does not stop the other connections", async () => {
  const i = await instance();
  i.start(1);
  i.start(2);
  i.welcome(1);
  i.throwOn("ws_send", 1);
  // connection 1's publish goes out at once, and its host throws: the exception unwinds through
  // the instance (host.js never lets this happen; this is the Rust side's own guard)
  assert.throws(() => i.publish(1, '"one"'), /ws_send threw for connection 1/);
  // connection 2 was not in the middle of anything: it opens, publishes and sends as usual
  i.welcome(2);
  assert.ok(
    i.log.some(([k, conn, state]) => k === "status" && conn === 2 && state === 1),
    "connection 2 opened",
  );
  assert.ok(i.publish(2, '"two"') > 0, "queued (its number), not refused as closed");
  const sent = i.log.filter(([k, conn]) => k === "send" && conn === 2).map(([, , , t]) => JSON.parse(t));
  assert.deepEqual(
    sent.map((f) => [f.type, f.data]),
    [["publish", "two"]],
  );
  assert.equal(i.lastSeq(2), 0);
  // and a third connection can still be made and used
  i.start(3);
  i.welcome(3);
  assert.ok(i.publish(3, '"three"') > 0);
});

test("each handle releases exactly its own resource: one live timer per connection, the newest", async () => {
  const i = await instance();
  i.start(1);
  const timers = () => [...i.live.timers].filter(([, c]) => c === 1).map(([id]) => id);
  const [connectTimer] = timers();
  assert.ok(connectTimer, "the connect timeout is set");
  i.welcome(1);
  const [pingTimer] = timers();
  assert.equal(timers().length, 1);
  assert.notEqual(pingTimer, connectTimer, "a new timer for the ping");
  assert.ok(
    i.log.some(([k, , id]) => k === "release" && id === connectTimer),
    "the connect timer was cancelled",
  );
  assert.ok(!i.log.some(([k, , id]) => k === "release" && id === pingTimer), "the new timer was not");
  // the timer fires: the ping goes out and the next timer is set; the fired one is not released
  const [, , , delay] = i.log.find(([k, , id]) => k === "timer" && id === pingTimer);
  i.clock.t += delay;
  i.live.timers.delete(pingTimer);
  i.timer(1, pingTimer);
  assert.ok(i.log.some(([k, conn, , t]) => k === "send" && conn === 1 && t === '{"type":"ping"}'));
  assert.equal(timers().length, 1);
  // a late callback for a timer the connection no longer holds changes nothing
  i.timer(1, connectTimer);
  assert.equal(timers().length, 1);
  // a close of a socket the connection no longer holds is ignored; its own socket's is not
  const [socket] = [...i.live.sockets].filter(([, c]) => c === 1).map(([id]) => id);
  i.closed(1, socket + 12345, 1006);
  assert.ok(!i.log.some(([k, conn, state]) => k === "status" && conn === 1 && state === 2), "still open");
  i.live.sockets.delete(socket); // (host.js lets a socket go when it closes)
  i.closed(1, socket, 1006);
  const status = i.log.filter(([k, conn]) => k === "status" && conn === 1).at(-1);
  assert.deepEqual(status.slice(2), [2, 1006, "connection lost"]);
  // freeing the connection releases what it still holds: its timer and its listeners
  i.w.conn_free(1);
  assert.deepEqual(
    [...i.live.timers.values(), ...i.live.listeners.values(), ...i.live.sockets.values()].filter((c) => c === 1),
    [],
  );
});
