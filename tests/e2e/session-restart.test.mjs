// Sessions across runtime crashes (issue #23), the server's half: every room a session socket
// joined is joined again at once after the runtime is SIGKILLed and comes back, each resumed
// from the device's own point, round after round, with publishes in flight as it dies. (The SDK's
// half, createClient() in Chromium, is the restart test in offline.test.mjs.)
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { ALL_RIGHTS, api, Client, roomName, startEdge, tempDir, token, until } from "../harness.mjs";

const ROOMS = 8;
const ROUNDS = 3;
/** How long every room may take to be joined again after the edge answers. */
const REJOIN_MS = 8_000;

async function session(edge, user) {
  const ws = new WebSocket(`${edge.wsUrl}/session/ws`, ["roomcast.v1", `bearer.${token(user, { "*": ALL_RIGHTS })}`], {
    closeTimeout: 500,
  });
  const client = new Client(ws);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  await client.next((f) => f.type === "session");
  return client;
}

test(`${ROOMS} rooms on one session socket are all joined again within ${REJOIN_MS} ms of each of ${ROUNDS} SIGKILL restarts`, async (t) => {
  const persistDir = tempDir("session-restart");
  const rooms = Array.from({ length: ROOMS }, (_, i) => roomName(`rejoin-${i}`));
  let edge = await startEdge({ persistDir });
  const port = edge.port;
  /** Per room: the device's resume point (epoch and the last seq it got). */
  const points = {};
  try {
    for (let round = 0; round <= ROUNDS; round++) {
      const s = await session(edge, "rejoiner");
      const up = Date.now();
      for (const room of rooms) s.send({ type: "join", room, ...(points[room] ?? {}) });
      const answered = () => rooms.filter((r) => s.frames.some((f) => f.room === r && (f.type === "joined" || f.type === "left")));
      await until(() => answered().length === rooms.length, { timeoutMs: REJOIN_MS, what: `every room joined (round ${round})` }).catch(
        (e) => {
          const stuck = rooms.filter((r) => !answered().includes(r));
          const seen = stuck.map((r) => [r, s.frames.filter((f) => f.room === r).map((f) => f.type)]);
          assert.fail(`${e.message}: ${stuck.length} of ${rooms.length} not answered: ${JSON.stringify(seen)}`);
        },
      );
      t.diagnostic(`round ${round}: all ${rooms.length} rooms joined ${Date.now() - up} ms after the socket opened`);
      for (const room of rooms) {
        const j = s.frames.find((f) => f.room === room && (f.type === "joined" || f.type === "left"));
        assert.equal(j.type, "joined", `${room}: ${JSON.stringify(j)}`);
        // resumed from the device's own point, what it missed replayed
        if (points[room]) assert.equal(j.resume?.status, "recovered", `${room}: ${JSON.stringify(j.resume)}`);
        points[room] = { epoch: j.epoch, since: points[room]?.since ?? j.seq };
      }
      // The rooms are busy when the runtime dies: messages through the session and the API.
      for (const [i, room] of rooms.entries()) s.send({ type: "publish", room, id: `r${round}-${i}`, data: { round, i } });
      await Promise.all(rooms.map((room) => api(edge, "POST", `/rooms/${room}/messages`, [{ data: round }])));
      await until(() => rooms.every((r) => s.frames.filter((f) => f.room === r && f.type === "message").length >= 2), {
        what: `the round's messages (round ${round})`,
      });
      for (const room of rooms) {
        const seqs = s.frames.filter((f) => f.room === room && f.type === "message").map((f) => f.seq);
        points[room].since = Math.max(points[room].since, ...seqs);
      }
      if (round === ROUNDS) {
        await s.close();
        break;
      }
      // More in flight as it dies: publishes not waited for.
      for (const [i, room] of rooms.entries()) s.send({ type: "publish", room, id: `late${round}-${i}`, data: "late" });
      await edge.stop("SIGKILL");
      edge = await startEdge({ persistDir, port });
    }
  } finally {
    await edge.stop();
  }
});
