// Secret rotation without downtime (docs/DEPLOYING.md): while ROOMCAST_SECRET_PREVIOUS and
// ROOMCAST_API_KEY_PREVIOUS are set, tokens signed with the previous secret connect, publish and
// refresh, and the previous API key calls the API; a live connection moves to a token of the new
// secret with a refresh. Once they are removed (the edge restarted without them, as a deploy or
// `wrangler secret delete` does), the previous secret and key are refused, at the edge and in the
// room's refresh check alike. The secrets are this test's own, passed as the deploy's would be.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { mintToken } from "../../tools/token.mjs";
import { ALL_RIGHTS, api, Client, roomName, startEdge, tempDir } from "../harness.mjs";

const OLD = { secret: "rotation-old-secret", key: "rotation-old-api-key" };
const NEW = { secret: "rotation-new-secret", key: "rotation-new-api-key" };
const OTHER = { secret: "rotation-unknown-secret", key: "rotation-unknown-key" };

const persistDir = tempDir("rotation");
const rotating = {
  ROOMCAST_SECRET: NEW.secret,
  ROOMCAST_SECRET_PREVIOUS: OLD.secret,
  ROOMCAST_API_KEY: NEW.key,
  ROOMCAST_API_KEY_PREVIOUS: OLD.key,
};
// The rotation's end: the previous ones set to nothing (what an unset secret reads as).
const rotated = { ROOMCAST_SECRET: NEW.secret, ROOMCAST_API_KEY: NEW.key, ROOMCAST_SECRET_PREVIOUS: "", ROOMCAST_API_KEY_PREVIOUS: "" };

let edge;
before(async () => {
  edge = await startEdge({ persistDir, vars: rotating });
});
after(async () => {
  await edge?.stop();
});

const tokenBy = (generation, user, room, ttlSeconds = 3600) =>
  mintToken({ secret: generation.secret, user, rooms: { [room]: ALL_RIGHTS }, ttlSeconds });

/** An upgrade that asks for refusals as close codes (as the SDK does): resolves with the close code, or "open". */
function closeCodeOf(room, bearer) {
  const ws = new WebSocket(`${edge.wsUrl}/rooms/${room}/ws?errors=close`, ["roomcast.v1", `bearer.${bearer}`], { closeTimeout: 500 });
  return new Promise((resolve, reject) => {
    ws.once("message", () => {
      ws.close();
      resolve("open");
    }); // the welcome: admitted
    ws.once("close", (code) => resolve(code));
    ws.once("error", reject);
  });
}

/** An upgrade without errors=close: resolves with the refusal's HTTP status, or "open". */
function upgradeStatus(room, bearer) {
  const ws = new WebSocket(`${edge.wsUrl}/rooms/${room}/ws`, ["roomcast.v1", `bearer.${bearer}`], { closeTimeout: 500 });
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      ws.close();
      resolve("open");
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve(res.statusCode);
    });
    ws.once("error", (e) => {
      if (!ws.listenerCount("unexpected-response")) reject(e);
    });
  });
}

const publishWith = (key, room, data) => api(edge, "POST", `/rooms/${room}/messages`, { data }, { key });

test("during a rotation: the previous secret's tokens and the previous API key work, nothing else does", async () => {
  const room = roomName("chat:rot");
  const old = await Client.connect(edge, room, { cid: "old" }, { token: tokenBy(OLD, "olga", room) });
  const fresh = await Client.connect(edge, room, { cid: "new" }, { token: tokenBy(NEW, "nina", room) });
  assert.equal((await old.publish("o1", "signed with the previous secret")).type, "ack");
  assert.equal((await fresh.next((f) => f.type === "message" && f.data === "signed with the previous secret")).user, "olga");
  assert.equal((await fresh.publish("n1", "signed with the new secret")).type, "ack");
  assert.equal((await old.next((f) => f.type === "message" && f.data === "signed with the new secret")).user, "nina");

  // a token signed with neither is refused at the edge: 401, or close 4401 when asked (final)
  const stranger = tokenBy(OTHER, "sam", room);
  assert.equal(await upgradeStatus(room, stranger), 401);
  assert.equal(await closeCodeOf(room, stranger), 4401);
  assert.equal(await closeCodeOf(room, tokenBy(OLD, "olga", room)), "open", "the same check admits the previous secret");

  // the API: both keys act as the backend, any other key is refused
  const byOldKey = await publishWith(OLD.key, room, "with the previous API key");
  assert.equal(byOldKey.status, 200, byOldKey.text);
  assert.equal((await fresh.next((f) => f.type === "message" && f.data === "with the previous API key")).from, ":api");
  assert.equal((await publishWith(NEW.key, room, "with the new API key")).status, 200);
  const refused = await publishWith(OTHER.key, room, "never stored");
  assert.equal(refused.status, 401);
  assert.equal(refused.json.error.code, "unauthorized");
  // a token of the previous secret on the HTTP API acts as its own user
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`, undefined, { key: tokenBy(OLD, "olga", room) });
  assert.equal(history.status, 200);
  assert.deepEqual(
    history.json.messages.map((m) => m.data),
    ["signed with the previous secret", "signed with the new secret", "with the previous API key", "with the new API key"],
  );
  await Promise.all([old.close(), fresh.close()]);
});

test("a live connection moves from the previous secret to the new one with a refresh and keeps working", async () => {
  const room = roomName("chat:refresh");
  const watcher = await Client.connect(edge, room, { cid: "w" }, { token: tokenBy(NEW, "walt", room) });
  const live = await Client.connect(edge, room, { cid: "live" }, { token: tokenBy(OLD, "lena", room, 600) });
  const oldExpiry = live.welcome.expires;
  const next = tokenBy(NEW, "lena", room, 7200);
  const nextExp = JSON.parse(Buffer.from(next.split(".")[1], "base64url")).exp;
  live.send({ type: "refresh", token: next });
  const refreshed = await live.next((f) => f.type === "refreshed" || f.type === "error");
  assert.deepEqual(refreshed, { type: "refreshed", expires: nextExp * 1000 });
  assert.ok(refreshed.expires > oldExpiry, "the new token's expiry replaced the old one");
  // a token of neither secret is refused by the room's own check, and the connection stays up
  live.send({ type: "refresh", token: tokenBy(OTHER, "lena", room) });
  assert.equal((await live.next((f) => f.type === "error")).code, "unauthorized");
  assert.equal((await live.publish("after-refresh", "still here")).type, "ack");
  assert.equal((await watcher.next((f) => f.type === "message" && f.data === "still here")).user, "lena");
  // while rotating, the room also takes a refresh signed with the previous secret
  live.send({ type: "refresh", token: tokenBy(OLD, "lena", room) });
  assert.equal((await live.next((f) => f.type === "refreshed" || f.type === "error")).type, "refreshed");
  await Promise.all([watcher.close(), live.close()]);
});

test("once the previous secret and key are removed, they are refused everywhere", async () => {
  const room = roomName("chat:done");
  // stored while rotating, kept across the restart
  assert.equal((await publishWith(OLD.key, room, "before")).status, 200);
  const port = edge.port;
  await edge.stop();
  edge = await startEdge({ persistDir, port, vars: rotated });

  assert.equal(await upgradeStatus(room, tokenBy(OLD, "olga", room)), 401);
  assert.equal(await closeCodeOf(room, tokenBy(OLD, "olga", room)), 4401);
  const byOldKey = await publishWith(OLD.key, room, "never stored");
  assert.equal(byOldKey.status, 401);
  assert.equal(byOldKey.json.error.code, "unauthorized");
  const oldTokenOnApi = await api(edge, "GET", `/rooms/${room}/history?since=0`, undefined, { key: tokenBy(OLD, "olga", room) });
  assert.equal(oldTokenOnApi.status, 401);

  // the new generation works, and the room's refresh check no longer takes the previous secret
  const live = await Client.connect(edge, room, { cid: "live" }, { token: tokenBy(NEW, "lena", room) });
  live.send({ type: "refresh", token: tokenBy(OLD, "lena", room) });
  assert.equal((await live.next((f) => f.type === "refreshed" || f.type === "error")).code, "unauthorized");
  live.send({ type: "refresh", token: tokenBy(NEW, "lena", room) });
  assert.equal((await live.next((f) => f.type === "refreshed" || f.type === "error")).type, "refreshed");
  assert.equal((await live.publish("p", "after the rotation")).type, "ack");
  const history = await api(edge, "GET", `/rooms/${room}/history?since=0`, undefined, { key: NEW.key });
  assert.equal(history.status, 200);
  assert.deepEqual(
    history.json.messages.map((m) => m.data),
    ["before", "after the rotation"],
  );
  await live.close();
});
