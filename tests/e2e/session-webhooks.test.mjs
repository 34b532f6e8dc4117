// `user.online` / `user.offline` (issue #23) against the real runtime: a user's first session
// socket reports online, their last one going reports offline after the grace period, a reload
// within it reports nothing; the events arrive signed (Standard Webhooks) at a receiver here.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { verifyWebhook } from "../../sdk/server/index.mjs";
import { ALL_RIGHTS, startEdge, token, until } from "../harness.mjs";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const GRACE_MS = 800;
const events = [];
let receiver, edge;

before(async () => {
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      try {
        const payload = await verifyWebhook(body, req.headers, SECRET);
        events.push(...payload.events);
        res.writeHead(204).end();
      } catch {
        res.writeHead(401).end();
      }
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  edge = await startEdge({
    vars: {
      WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks`,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_EVENTS: "user.online,user.offline",
      PRESENCE_GRACE_MS: GRACE_MS,
    },
  });
});
after(async () => {
  await edge?.stop();
  await new Promise((r) => receiver?.close(r));
});

async function open(user) {
  const ws = new WebSocket(`${edge.wsUrl}/session/ws`, ["roomcast.v1", `bearer.${token(user, { "*": ALL_RIGHTS })}`], {
    closeTimeout: 500,
  });
  await new Promise((resolve, reject) => {
    ws.once("message", resolve);
    ws.once("error", reject);
  });
  return ws;
}

const of = (user) => events.filter((e) => e.user === user).map((e) => e.type);

test("user.online on the first socket, user.offline after the last one and the grace period; a reload says nothing", async () => {
  const a = await open("olga");
  await until(() => of("olga").length === 1, { what: "user.online" });
  const b = await open("olga");
  a.close();
  b.close();
  // a reload: back within the grace period
  const c = await open("olga");
  c.close();
  await until(() => of("olga").length === 2, { what: "user.offline", timeoutMs: 20_000 });
  assert.deepEqual(of("olga"), ["user.online", "user.offline"]);
  const [online] = events.filter((e) => e.user === "olga");
  assert.equal(typeof online.id, "string");
  assert.equal(typeof online.ts, "number");
  assert.equal(online.room, undefined, "a user's event names no room");
});
