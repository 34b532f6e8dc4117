// For clients written by others (issue #24): after the room closes a socket, does the TCP
// connection end promptly? A client library that reports a close only when TCP ends (Python's
// `websockets`, Node's `ws`) reports it late otherwise. A raw TCP client answers each close frame
// at once, as RFC 6455 says, and times the end of TCP from it.
//
// - On bare workerd (tests/repro/close-linger.mjs, the first test): a hibernatable socket closed
//   after its 101 ends TCP at once, whoever closes it (its own message, another request, an alarm);
//   one closed before its 101 keeps TCP open about 10 s. The room therefore closes a socket it
//   refuses at open only once the 101 is on its way (platform::close, like the frames it holds),
//   and this test holds the runtime to the prompt cases.
// - Through the real edge a close the client starts ends TCP at once, but (the `todo` tests) every
//   close the room sends, at open or later, leaves TCP open until the room's object goes idle:
//   PRESENCE_GRACE_MS plus about 10 s (15 s by default, 11-13 s with a 1 s grace). The minimal
//   object with each thing the room adds (the ping auto-response, attachments, the 101's headers,
//   a held welcome, the edge's own request, a throwing or slow webSocketClose, a pending alarm)
//   ends it at once. In the room itself (logged, then removed), the client's answer reaches its
//   webSocketClose 6-50 ms after the room's close, and leaving out its reciprocal close for sockets
//   it had closed changes nothing. Cause not found: docs/PROTOCOL.md (Close codes) tells clients to treat the
//   close frame as the end. The tests measure every code a request can provoke cheaply; 4002
//   (token expiry) and 4008 (not reading) close from the same place as 4001 (the room's timeout
//   pass), and 4029 at open is the edge's or `may_create`'s socket, accepted without hibernation.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { ALL_RIGHTS, apiKey, roomName, startEdge, token } from "../harness.mjs";
import { closeOnce, start as startBareObject } from "../repro/close-linger.mjs";

const LINGER_MAX_MS = 1_000;
// The two edge measurements of the known linger (about 37 s, and they cannot pass today) run only
// on request: ROOMCAST_LINGER_EDGE=1 node --experimental-websocket --test tests/e2e/close-linger.test.mjs
const EDGE_TODO = process.env.ROOMCAST_LINGER_EDGE
  ? "through the edge TCP ends when the room goes idle (PRESENCE_GRACE_MS + ~10 s); cause not found (see above)"
  : undefined;
const EDGE_SKIP = EDGE_TODO ? undefined : "a known runtime linger, measured on request (ROOMCAST_LINGER_EDGE=1)";
const HEARTBEAT_TIMEOUT_MS = 2_000;
let edge;
before(async () => {
  edge = await startEdge({
    vars: { MAX_CONNECTIONS: 2, MAX_CONNECTIONS_PER_USER: 1, MAX_STRIKES: 2, HEARTBEAT_TIMEOUT_MS },
  });
});
after(() => edge?.stop());

/**
 * A WebSocket over a raw TCP socket: `frames` (text), `closed` resolves with `{ code, reason,
 * lingerMs }` once TCP ended, `lingerMs` the time from the server's close frame (answered at once)
 * to the end of TCP, or null when no close frame came.
 */
async function rawSocket(path, bearer) {
  const socket = connect(edge.port, "127.0.0.1");
  const frames = [];
  const waiters = new Set();
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  let close = null;
  const send = (opcode, payload) => {
    const body = Buffer.from(payload);
    const mask = randomBytes(4);
    const head =
      body.length < 126
        ? Buffer.from([0x80 | opcode, 0x80 | body.length])
        : Buffer.from([0x80 | opcode, 0x80 | 126, body.length >> 8, body.length & 0xff]);
    socket.write(Buffer.concat([head, mask, Buffer.from(body.map((b, i) => b ^ mask[i % 4]))]));
  };
  const closed = new Promise((resolve, reject) => {
    socket.on("error", reject);
    socket.on("end", () => socket.end());
    socket.on("close", () => resolve({ ...(close ?? {}), lingerMs: close ? Math.round(performance.now() - close.at) : null }));
  });
  const opened = new Promise((resolve, reject) => {
    socket.on("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${edge.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
          + `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n`
          + `Sec-WebSocket-Protocol: roomcast.v1, bearer.${bearer}\r\n\r\n`,
      ),
    );
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString();
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(head.split("\r\n")[0]));
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        resolve();
      }
      for (;;) {
        if (buffer.length < 2) return;
        let len = buffer[1] & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buffer.length < 4) return;
          len = buffer.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buffer.length < 10) return;
          len = Number(buffer.readBigUInt64BE(2));
          at = 10;
        }
        if (buffer.length < at + len) return;
        const opcode = buffer[0] & 0x0f;
        const payload = buffer.subarray(at, at + len);
        buffer = buffer.subarray(at + len);
        if (opcode === 0x8 && close === null) {
          close = {
            at: performance.now(),
            code: payload.length >= 2 ? payload.readUInt16BE(0) : null,
            reason: payload.subarray(2).toString(),
          };
          send(0x8, payload.subarray(0, 2)); // the close handshake's answer, at once
        } else if (opcode === 0x1) {
          for (const line of payload.toString().split("\n")) frames.push(JSON.parse(line));
          for (const w of waiters) w();
        }
      }
    });
  });
  await opened;
  /** The first frame matching `pred`, now or later. */
  const next = (pred) =>
    new Promise((resolve) => {
      const check = () => {
        const f = frames.find(pred);
        if (f === undefined) return;
        waiters.delete(check);
        resolve(f);
      };
      waiters.add(check);
      check();
    });
  const sendClose = (code) => send(0x8, Buffer.from([code >> 8, code & 0xff]));
  return { frames, next, closed, send: (text) => send(0x1, text), sendClose };
}

const open = async (room, user, cid) =>
  rawSocket(`/rooms/${room}/ws?cid=${cid ?? `${user}-tab`}`, await token(user, { [room]: ALL_RIGHTS }));
const api = (method, path, body) =>
  fetch(`${edge.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey()}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

/** Asserts the socket was closed with `code` and TCP ended within LINGER_MAX_MS of the handshake. */
async function assertPromptClose(socket, code, what) {
  const { code: got, reason, lingerMs } = await socket.closed;
  assert.equal(got, code, `${what}: closed with ${got} (${reason})`);
  assert.ok(lingerMs !== null && lingerMs <= LINGER_MAX_MS, `${what}: TCP ended ${lingerMs} ms after the close handshake`);
  return lingerMs;
}

test("bare workerd: a hibernatable socket closed after its 101 ends TCP within 1 s, whoever closes it", async () => {
  const { mf, port } = await startBareObject();
  try {
    const lingers = {};
    for (const variant of [
      "hibernation",
      "hibernation-other-request",
      "hibernation-alarm",
      "hibernation-at-open-after",
      "accept-at-open",
    ]) {
      for (const options of ["", "&auto&attach&ext&proto&send&internal"]) {
        const r = await closeOnce(port, variant, 4013, 5_000, options);
        assert.equal(r.closeCode, 4013, `${variant}${options}: ${JSON.stringify(r)}`);
        assert.ok(r.lingerMs !== null && r.lingerMs <= LINGER_MAX_MS, `${variant}${options}: ${JSON.stringify(r)}`);
        lingers[`${variant}${options}`] = r.lingerMs;
      }
    }
    console.log(`bare workerd, ms from the close handshake to the end of TCP: ${JSON.stringify(lingers)}`);
  } finally {
    await mf.dispose();
  }
});

test("the edge: a close the client starts ends TCP within 1 s of the room's answer", async () => {
  const ann = await open(roomName("linger:client"), "ann");
  await ann.next((f) => f.type === "welcome");
  ann.sendClose(4000);
  // the room answers with the client's code (worker/src/room_object.rs, webSocketClose)
  await assertPromptClose(ann, 4000, "ann's own close");
});

test("the edge: TCP ends within 1 s of the close handshake for every close code the room sends at open", {
  todo: EDGE_TODO,
  skip: EDGE_SKIP,
}, async () => {
  const room = roomName("linger:open");
  const ann = await open(room, "ann");
  await ann.next((f) => f.type === "welcome");
  // 4410: the user holds MAX_CONNECTIONS_PER_USER (1) connections here
  const lingers = { 4410: await assertPromptClose(await open(room, "ann", "ann-tab2"), 4410, "a second connection of ann") };
  // 4412: a client id bound to another user
  lingers[4412] = await assertPromptClose(await open(room, "bob", "ann-tab"), 4412, "bob with ann's client id");
  // 4409: the room holds MAX_CONNECTIONS (2)
  const bob = await open(room, "bob");
  await bob.next((f) => f.type === "welcome");
  lingers[4409] = await assertPromptClose(await open(room, "carol"), 4409, "carol in a full room");
  // 4411: a user banned from the room
  assert.equal((await api("POST", `/rooms/${room}/kick`, { user: "bob", banSeconds: 60 })).status, 200);
  lingers["4411 (kick)"] = await assertPromptClose(bob, 4411, "bob kicked");
  lingers["4411 (banned, at open)"] = await assertPromptClose(await open(room, "bob"), 4411, "bob banned");
  ann.send('{"type":"ping"}');
  console.log(`ms from the close handshake to the end of TCP: ${JSON.stringify(lingers)}`);
});

test("the edge: TCP ends within 1 s of the close handshake for every close code the room sends later", {
  todo: EDGE_TODO,
  skip: EDGE_SKIP,
}, async () => {
  const room = roomName("linger:later");
  const lingers = {};
  // 4013: the backend deleted the room's history
  const ann = await open(room, "ann");
  await ann.next((f) => f.type === "welcome");
  assert.equal((await api("DELETE", `/rooms/${room}/history`)).status, 200);
  lingers[4013] = await assertPromptClose(ann, 4013, "history deleted");
  // 4029: MAX_STRIKES (2) refused frames
  const bob = await open(room, "bob");
  await bob.next((f) => f.type === "welcome");
  for (let i = 0; i < 3; i++) bob.send("not json");
  lingers[4029] = await assertPromptClose(bob, 4029, "too many errors");
  // 4001: no sign of life for longer than the heartbeat timeout (the room's timeout pass, as 4002)
  const carol = await open(room, "carol");
  await carol.next((f) => f.type === "welcome");
  lingers[4001] = await assertPromptClose(carol, 4001, "heartbeat timeout");
  console.log(`ms from the close handshake to the end of TCP: ${JSON.stringify(lingers)}`);
});
