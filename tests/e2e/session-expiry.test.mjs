// A session socket's token expiring (issue #23): expiry acts per room, as kicks and deletions do.
// Whichever sees the deadline first, the rooms (each closes its join) or the session's own sweep,
// every joined room leaves with `left {room, code: 4002}` and the socket stays open: a `refresh`
// with a fresh token lets the device join again; without one, the session closes the socket with
// 4002 after its grace (the heartbeat timeout), and the client comes back with a fresh token. The
// token here expired 25 s ago: within the 30 s leeway it is admitted, and it runs out ~5 s later.
// Raw session sockets first, then the SDK's createClient() (the built package, in Node on `ws`).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { ALL_RIGHTS, api, Client, roomName, startEdge, token, until } from "../harness.mjs";

const HEARTBEAT_TIMEOUT_MS = 4000;
let edge, createClient;
before(async () => {
  ({ createClient } = await import("../../sdk/dist/index.js"));
  // a short heartbeat timeout: the session sweeps its sockets every 2 s, and an expired socket's
  // grace for a refresh is 4 s
  edge = await startEdge({ vars: { HEARTBEAT_TIMEOUT_MS } });
});
after(async () => {
  await edge?.stop();
});

/** A session socket for `user` whose token ran out of its leeway ~5 s from now, pinging. */
async function expiring(user) {
  const now = Date.now();
  const t = token(user, { "*": ALL_RIGHTS }, { ttlSeconds: -25, now });
  const ws = new WebSocket(`${edge.wsUrl}/session/ws`, ["roomcast.v1", `bearer.${t}`], { closeTimeout: 500 });
  const client = new Client(ws);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  await client.next((f) => f.type === "session");
  client.pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"ping"}'), 1000);
  return { ws, client, now };
}

test("an expired token: each room leaves with 4002, the socket stays, and a refresh joins again", { timeout: 60_000 }, async () => {
  const rooms = [roomName("expiry-a"), roomName("expiry-b")];
  const { ws, client, now } = await expiring("ivan");
  try {
    for (const room of rooms) {
      client.send({ type: "join", room });
      await client.next((f) => f.type === "joined" && f.room === room);
    }
    for (const room of rooms) {
      const left = await client.next((f) => f.type === "left" && f.room === room);
      assert.equal(left.code, 4002, `${room} left at expiry`);
    }
    assert.ok(Date.now() - now >= 4_000, "not before the token's deadline (exp + 30 s leeway)");
    assert.equal(ws.readyState, WebSocket.OPEN, "the socket stays open for a refresh");
    // Until a refresh, a join is refused with 4002.
    client.send({ type: "join", room: rooms[0] });
    const refused = await client.next((f) => f.type === "left" && f.room === rooms[0]);
    assert.equal(refused.code, 4002);
    // A fresh token: the device joins again, and the socket outlives the grace.
    client.send({ type: "refresh", token: token("ivan", { "*": ALL_RIGHTS }) });
    await client.next((f) => f.type === "refreshed");
    client.send({ type: "join", room: rooms[0] });
    await client.next((f) => f.type === "joined" && f.room === rooms[0]);
    await new Promise((r) => setTimeout(r, HEARTBEAT_TIMEOUT_MS * 2));
    assert.equal(ws.readyState, WebSocket.OPEN, "a refreshed socket is not closed after the grace");
  } finally {
    clearInterval(client.pinger);
    ws.terminate();
  }
});

test("an expired token not refreshed: the session closes the socket with 4002 after its grace", { timeout: 60_000 }, async () => {
  const room = roomName("expiry-c");
  const { client } = await expiring("judy");
  try {
    client.send({ type: "join", room });
    await client.next((f) => f.type === "joined" && f.room === room);
    const left = await client.next((f) => f.type === "left" && f.room === room);
    assert.equal(left.code, 4002);
    const leftAt = Date.now();
    const closed = await client.closed;
    assert.equal(closed.code, 4002, "the session closed the socket after the grace");
    assert.ok(Date.now() - leftAt >= HEARTBEAT_TIMEOUT_MS - 2_100, "not before the grace (the sweep may have found it up to 2 s late)");
  } finally {
    clearInterval(client.pinger);
  }
});

test("the SDK: its rooms leave with 4002, it refreshes the token and they join again on the same socket", { timeout: 60_000 }, async () => {
  const rooms = [roomName("expiry-sdk-a"), roomName("expiry-sdk-b")];
  const now = Date.now();
  // The first two tokens (the connection's, and the refresh it asks for at once) are the expiring
  // one: the token function is stuck on it until the rooms leave.
  let calls = 0;
  let fresh = false;
  const tokenFn = () => {
    calls++;
    return fresh ? token("kim", { "*": ALL_RIGHTS }) : token("kim", { "*": ALL_RIGHTS }, { ttlSeconds: -25, now });
  };
  const sockets = [];
  class Counted extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  // (pings every second: the session's heartbeat timeout here is 4 s)
  const options = { token: tokenFn, WebSocket: Counted, minReconnectDelayMs: 100, maxReconnectDelayMs: 500, pingIntervalMs: 1000 };
  const client = createClient({ url: edge.wsUrl, ...options });
  try {
    const joined = rooms.map((name) => client.join(name));
    const statuses = joined.map((r) => {
      const log = [];
      r.on("status", (s) => log.push(s));
      return log;
    });
    await until(() => joined.every((r) => r.state === "open"), { what: "rooms open" });
    await until(() => calls >= 2, { what: "the early refresh" });
    fresh = true;
    await until(() => statuses.every((log) => log.some((s) => s.code === 4002)), { timeoutMs: 15_000, what: "each room left with 4002" });
    await until(() => joined.every((r) => r.state === "open"), { timeoutMs: 15_000, what: "rooms open again" });
    assert.ok(Date.now() - now >= 4_000, "not before the token's deadline");
    assert.ok(calls >= 3, `a fresh token was fetched (${calls} calls)`);
    assert.equal(sockets.length, 1, "one socket throughout: expiry left the rooms, not the socket");
    assert.equal(client.status, "open");
    // Both rooms work again, past the grace the socket would have had without a refresh.
    await new Promise((r) => setTimeout(r, HEARTBEAT_TIMEOUT_MS * 1.5));
    const got = joined.map(() => []);
    for (const [i, r] of joined.entries()) r.on("message", (m) => got[i].push(m.data));
    for (const name of rooms) await api(edge, "POST", `/rooms/${name}/messages`, [{ data: "after" }]);
    await until(() => got.every((g) => g.includes("after")), { what: "a message in each room after the rejoin" });
    assert.equal(sockets.length, 1);
  } finally {
    client.close();
  }
});
