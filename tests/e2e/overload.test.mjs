// Overload from one member (issue #22): a compression bomb and frames far over the limit. Over a
// raw socket where a WebSocket library would not do it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { ALL_RIGHTS, Client, quantile, rawUpgrade, roomName, sleep, startEdge, token } from "../harness.mjs";

let edge;
before(async () => {
  // The room's own limits are the defaults (64 KiB frames, a byte burst of 1 MiB).
  edge = await startEdge();
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
  const closed = new Promise((resolve) => attacker.once("close", (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })));
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
