// A session socket's token expiring (issue #23): the token is the socket's, so every room it
// joined ends with it. Whichever sees the deadline first, the rooms (each closes its join with
// `left` 4002) or the session's own sweep (it closes the socket with 4002), the socket ends with
// 4002 and the client comes back with a fresh token, as a room socket does. The token here expired
// 25 s ago: within the 30 s leeway it is admitted, and it runs out ~5 s later.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { ALL_RIGHTS, Client, roomName, startEdge, token } from "../harness.mjs";

let edge;
before(async () => {
  // a short heartbeat timeout: the session sweeps its sockets every 2 s
  edge = await startEdge({ vars: { HEARTBEAT_TIMEOUT_MS: 4000 } });
});
after(async () => {
  await edge?.stop();
});

test("an expired token: its rooms leave with 4002, then the session closes the socket with 4002", { timeout: 60_000 }, async () => {
  const room = roomName("expiry-s");
  const now = Date.now();
  const t = token("ivan", { "*": ALL_RIGHTS }, { ttlSeconds: -25, now });
  const ws = new WebSocket(`${edge.wsUrl}/session/ws`, ["roomcast.v1", `bearer.${t}`], { closeTimeout: 500 });
  const client = new Client(ws);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  await client.next((f) => f.type === "session");
  const pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"ping"}'), 1000);
  try {
    client.send({ type: "join", room });
    await client.next((f) => f.type === "joined" && f.room === room);
    const closed = await client.closed;
    assert.equal(closed.code, 4002, "the session closed the socket at expiry");
    for (const left of client.frames.filter((f) => f.type === "left")) assert.equal(left.code, 4002, "a room let its join go at expiry");
    assert.ok(Date.now() - now >= 4_000, "not before the token's deadline (exp + 30 s leeway)");
  } finally {
    clearInterval(pinger);
  }
});
