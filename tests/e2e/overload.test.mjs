// Overload from one member (issue #22): a compression bomb, frames far over the limit, and a
// reader that stops reading. Over raw sockets where a WebSocket library would not do it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import {
  ALL_RIGHTS,
  api,
  Client,
  quantile,
  rawUpgrade,
  roomName,
  sleep,
  startEdge,
  token,
  until,
  workerdMemory,
  wsFrame,
} from "../harness.mjs";

let edge;
before(async () => {
  // The room's own limits are the defaults (64 KiB frames, a byte burst of 1 MiB); the backend
  // may publish fast, to fill a slow reader's queue within the test's time.
  edge = await startEdge({
    vars: { HTTP_RATE_BYTES_PER_SEC: 64 << 20, PUBLISH_BATCH_MAX_BYTES: 4 << 20, HTTP_RATE_MESSAGES_BURST: 100_000 },
  });
});
after(async () => {
  await edge?.stop();
});

const MiB = 1 << 20;
const bearer = (user, room) => `roomcast.v1, bearer.${token(user, { [room]: ALL_RIGHTS })}`;

/** Publishes every `everyMs` until `stop()` says so; resolves with each publish→ack time (ms). */
async function publishLoop(client, stop, everyMs = 50) {
  const times = [];
  for (let i = 0; !stop(); i++) {
    const sent = Date.now();
    const answer = await client.publish(`p${i}`, { i });
    assert.equal(answer.type, "ack", JSON.stringify(answer));
    times.push(Date.now() - sent);
    await sleep(everyMs); // the publisher's pace, not a wait for a condition
  }
  return times;
}

test("compression is never negotiated, whatever the client offers", async () => {
  const room = roomName("deflate");
  const offer = "permessage-deflate; client_max_window_bits; server_no_context_takeover";
  const raw = await rawUpgrade(edge, `/rooms/${room}/ws?cid=raw`, {
    "Sec-WebSocket-Protocol": bearer("raw", room),
    "Sec-WebSocket-Extensions": offer,
  });
  assert.match(raw.status, / 101 /);
  assert.equal(raw.headers["sec-websocket-protocol"], "roomcast.v1");
  assert.equal(raw.headers["sec-websocket-extensions"], undefined, "no extension agreed to, and none named");
  raw.socket.destroy();
  // A library that offers it by default (ws does, browsers do) gets none either.
  const ws = await Client.connect(edge, room, { cid: "lib" });
  assert.equal(ws.ws.extensions, "");
  await ws.close();
});

test("a deflate bomb closes its sender with 4009 at once; members here and in another room stay under 1 s", async (t) => {
  const room = roomName("bomb");
  const [honest, elsewhere] = await Promise.all([
    Client.connect(edge, room, { cid: "honest" }),
    Client.connect(edge, roomName("calm"), { cid: "far" }),
  ]);
  // The attacker offers permessage-deflate (fast settings, to spare the test's CPU): each 32 MiB
  // frame is ~150 KB on the wire when agreed to, and each is followed by a ping that reaches
  // the room (not byte-exact), which used to take a strike back.
  const attacker = new WebSocket(`${edge.wsUrl}/rooms/${room}/ws?cid=bomber`, bearer("bomber", room).split(", "), {
    perMessageDeflate: { zlibDeflateOptions: { level: 1 } },
    closeTimeout: 500,
  });
  await new Promise((resolve, reject) => {
    attacker.once("open", resolve);
    attacker.once("error", reject);
  });
  const closed = new Promise((resolve) =>
    attacker.once("close", (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })),
  );
  const bomb = JSON.stringify({ type: "publish", id: "bomb", data: "x".repeat(32 * MiB - 100) });
  const start = Date.now();
  const over = () => Date.now() - start > 3_000;
  let bombs = 0;
  const attack = (async () => {
    while (!over() && attacker.readyState === WebSocket.OPEN) {
      await new Promise((resolve) => attacker.send(bomb, resolve));
      bombs++;
      if (attacker.readyState === WebSocket.OPEN) attacker.send('{"type": "ping"}');
    }
  })();
  const [, here, there] = await Promise.all([attack, publishLoop(honest, over), publishLoop(elsewhere, over)]);
  const close = await Promise.race([closed, sleep(5_000).then(() => null)]);
  assert.ok(close, `the attacker was never closed (${bombs} bombs sent)`);
  assert.deepEqual([close.code, close.reason], [4009, "frame too large"]);
  assert.ok(close.at - start < 3_000, `closed after ${close.at - start} ms`);
  for (const [where, times] of [
    ["same room", here],
    ["another room", there],
  ]) {
    assert.ok(times.length >= 20, `${where}: only ${times.length} publishes in 3 s`);
    const p99 = quantile(times, 0.99);
    t.diagnostic(`${where}: p99 publish→ack ${p99} ms over ${times.length} publishes; the sender closed after ${close.at - start} ms`);
    assert.ok(p99 < 1_000, `${where}: p99 publish→ack ${p99} ms`);
  }
  await Promise.all([honest.close(), elsewhere.close()]);
});

test("a binary frame over the frame limit closes its sender with 4009 too", async () => {
  const room = roomName("binbomb");
  const c = await Client.connect(edge, room, { cid: "bin" });
  c.ws.send(Buffer.alloc(2 * MiB));
  assert.equal((await c.next((f) => f.type === "error")).code, "too_large");
  assert.deepEqual(await c.closed, { code: 4009, reason: "frame too large" });
});

/** Reads server frames (unmasked) from a raw socket: text frames' lines as JSON, and the close. */
function serverFrames(socket, initial) {
  const out = { frames: [], close: undefined, bytes: initial.length };
  let buf = initial;
  const parse = () => {
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 127;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + len) return;
      const opcode = buf[0] & 15;
      const payload = buf.subarray(at, at + len);
      if (opcode === 1) for (const line of payload.toString().split("\n")) out.frames.push(JSON.parse(line));
      if (opcode === 8) out.close = { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() };
      buf = buf.subarray(at + len);
    }
  };
  socket.on("data", (chunk) => {
    out.bytes += chunk.length;
    buf = Buffer.concat([buf, chunk]);
    parse();
  });
  parse();
  return out;
}

// A member that stops reading (docs/SECURITY.md): the runtime exposes no buffered amount and
// queues every send, so the room asks for read marks (docs/PROTOCOL.md, *Read marks*). A
// connection that does not echo them is closed with 4008 once it is UNREAD_MAX_BYTES behind, and
// nothing more is sent to it; one that echoes them stays.
test("a member that stops reading is closed with 4008 and held to UNREAD_MAX_BYTES; readers stay", async (t) => {
  const room = roomName("slow");
  const { socket, status, rest } = await rawUpgrade(edge, `/rooms/${room}/ws?cid=slow`, { "Sec-WebSocket-Protocol": bearer("slow", room) });
  assert.match(status, / 101 /);
  // It never reads, but pings byte-exact, so the room sees it alive.
  const pinger = setInterval(() => socket.write(wsFrame(1, '{"type":"ping"}')), 500);
  const honest = await Client.connect(edge, room, { cid: "honest" });
  // An honest reader echoes every mark it reads, as the SDK does.
  honest.ws.on("message", (raw) => {
    for (const line of String(raw).split("\n")) {
      const f = JSON.parse(line);
      if (f.type === "mark") honest.ws.send(JSON.stringify({ type: "read", id: f.id }));
    }
  });
  const memoryBefore = workerdMemory(edge);
  const data = "y".repeat(10_000);
  const batch = Array.from({ length: 100 }, (_, i) => ({ data: { i, data } }));
  let sent = 0;
  let done = false;
  const started = Date.now();
  const flood = (async () => {
    // Until the room has closed the non-reader (only the honest member is left), or 64 MiB.
    while (sent < 64 * MiB) {
      const res = await api(edge, "POST", `/rooms/${room}/messages`, batch);
      assert.equal(res.status, 200, res.text);
      sent += batch.length * (data.length + 20);
      if (sent > 8 * MiB && (await api(edge, "GET", `/rooms/${room}/stats`)).json.connections === 1) break;
      await sleep(400); // the flood's pace (about 2.5 MB/s), not a wait for a condition
    }
    // After its close, nothing more goes to it.
    for (let i = 0; i < 4; i++) {
      assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, batch)).status, 200);
      sent += batch.length * (data.length + 20);
    }
    done = true;
  })();
  const times = await publishLoop(honest, () => done, 20);
  await flood;
  const perSecond = sent / ((Date.now() - started) / 1000);
  const p99 = quantile(times, 0.99);
  assert.ok(p99 < 1_000, `p99 publish→ack next to a non-reader: ${p99} ms`);
  const grown = workerdMemory(edge) - memoryBefore;
  clearInterval(pinger);
  // The room stopped sending to it: reading again, it gets what was queued up to the close (in
  // order, from seq 1), then 4008, and far less than was published.
  const got = serverFrames(socket, rest);
  socket.resume();
  await until(() => got.close, { timeoutMs: 30_000, what: "the queued frames and the close" });
  assert.deepEqual(got.close, { code: 4008, reason: "not reading" });
  const seqs = got.frames.filter((f) => f.type === "message").map((f) => f.seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => i + 1),
  );
  // The bound: UNREAD_MAX_BYTES, one mark interval, and what the room sent it during the 3-s grace
  // (and the alarm that follows it).
  const bound = 8 * MiB + MiB + 4 * perSecond;
  assert.ok(got.bytes < bound, `held ${(got.bytes / MiB).toFixed(1)} MiB, bound ${(bound / MiB).toFixed(1)} MiB`);
  assert.ok(got.bytes < sent, "less than was published");
  // The reader was never closed and got everything.
  assert.equal(honest.ws.readyState, honest.ws.OPEN, "the reader stays");
  // (its own publishes do not come back to it: echo is off)
  const { seq } = (await api(edge, "POST", `/rooms/${room}/messages`, { data: "last" })).json;
  const lastSeq = () => honest.frames.reduce((m, f) => (f.type === "message" && f.seq > m ? f.seq : m), 0);
  await until(() => lastSeq() === seq, { timeoutMs: 60_000, what: `the reader got the last message (${seq}; has ${lastSeq()})` });
  t.diagnostic(
    `a non-reader: ${(sent / MiB).toFixed(1)} MiB published, ${(got.bytes / MiB).toFixed(1)} MiB held for it until 4008, `
      + `workerd resident memory +${(grown / MiB).toFixed(1)} MiB; p99 publish→ack of another member ${p99} ms (${times.length} publishes)`,
  );
  socket.destroy();
  await honest.close();
});
