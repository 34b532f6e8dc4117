// A webhook receiver on 127.0.0.1 that fails at random, for the webhook chaos run and its short
// version in `npm test`. Every POST's signature is checked with a Standard Webhooks library (not
// the project's own code); every event of a verified POST is appended to a JSONL log, one line
// per event, with what the receiver did with the request. Per request, a seeded generator picks:
//   fail   answered 500 at once
//   hold   held `holdMs` (set beyond the room's WEBHOOK_TIMEOUT_MS), then 204: the room has given up
//   reset  the connection destroyed mid-request (after the first bytes of the body; nothing logged)
//   slow   answered 204 after `slowMs` (within the timeout: a window to kill the runtime in)
//   ok     answered 204 at once
// `maxFailuresInRow` bounds the failures in a row per room (the room's backoff doubles with each
// one, up to 10 min; a bound keeps a run's length predictable without taking any fault away).
// `mode: "never"` holds every request until close() (the latency benchmark's dead receiver).
import { randomBytes } from "node:crypto";
import { appendFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import { rng } from "../harness.mjs";

/** A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes. */
export function webhookSecret() {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/**
 * The verifier: the `standardwebhooks` npm package (a devDependency), an implementation that is
 * not the project's own. It checks the signature and that the timestamp is within 5 minutes.
 */
export function makeVerifier(secret) {
  const wh = new Webhook(secret);
  return { name: "standardwebhooks", verify: (body, headers) => wh.verify(body, headers) };
}

export async function faultReceiver({
  secret,
  seed = 1,
  logFile,
  mode = "faults",
  failRate = 0.3,
  holdRate = 0.07,
  resetRate = 0.07,
  slowRate = 0.08,
  holdMs = 3500,
  slowMs = 600,
  maxFailuresInRow = Infinity,
} = {}) {
  const verifier = makeVerifier(secret);
  const random = rng(seed);
  if (logFile) writeFileSync(logFile, "");
  const counts = { requests: 0, verified: 0, badSignature: 0, badBody: 0, events: 0, fail: 0, hold: 0, reset: 0, slow: 0, ok: 0, never: 0 };
  const inRow = new Map(); // room -> failures in a row this receiver caused
  const open = new Set(); // sockets, so close() ends held requests
  const held = new Set(); // responses being held
  const holdWaiters = [];
  let requestNo = 0;

  let forced = null;
  const pick = (room) => {
    if (mode === "never") return "never";
    if (forced) {
      const m = forced;
      forced = null;
      return m;
    }
    const r = random();
    let m =
      r < failRate
        ? "fail"
        : r < failRate + holdRate
          ? "hold"
          : r < failRate + holdRate + resetRate
            ? "reset"
            : r < failRate + holdRate + resetRate + slowRate
              ? "slow"
              : "ok";
    const failing = m === "fail" || m === "hold" || m === "reset";
    if (failing && (inRow.get(room) ?? 0) >= maxFailuresInRow) m = "ok";
    return m;
  };
  const hold = (res, ms) =>
    new Promise((resolve) => {
      held.add(res);
      for (const w of holdWaiters.splice(0)) w();
      const timer = ms === Infinity ? null : setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        held.delete(res);
        resolve();
      }
      res.once("close", done);
    });

  const server = createServer((req, res) => {
    const no = ++requestNo;
    counts.requests++;
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    // The room's outbox key is in the webhook-id (`batch_evt_<key>_<n>_<count>`), so the failure
    // bound per room applies before the body is read (a reset never reads it all).
    const webhookId = String(req.headers["webhook-id"] ?? "");
    const roomKey = webhookId.split("_")[2] ?? "";
    const m = pick(roomKey);
    const failing = m === "fail" || m === "hold" || m === "reset";
    inRow.set(roomKey, failing ? (inRow.get(roomKey) ?? 0) + 1 : 0);
    const chunks = [];
    if (m === "reset") {
      counts.reset++;
      // mid-request: the first bytes of the body are in, nothing is answered
      const cut = () => req.socket.destroy();
      req.once("data", cut);
      req.once("end", cut);
      return;
    }
    req.on("data", (d) => chunks.push(d));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let parsed;
      try {
        parsed = verifier.verify(body, req.headers);
      } catch (e) {
        counts.badSignature++;
        if (logFile) appendFileSync(logFile, `${JSON.stringify({ req: no, at: Date.now(), bad: String(e.message ?? e), webhookId })}\n`);
        res.writeHead(400).end();
        return;
      }
      const events = Array.isArray(parsed?.events) ? parsed.events : null;
      if (!events || events.length === 0) {
        counts.badBody++;
        res.writeHead(400).end();
        return;
      }
      counts.verified++;
      counts.events += events.length;
      counts[m]++;
      const at = Date.now();
      if (logFile) {
        // One line per event, as received: the checks read this file, not the receiver's memory.
        appendFileSync(logFile, `${events.map((event) => JSON.stringify({ req: no, at, mode: m, webhookId, event })).join("\n")}\n`);
      }
      receiver.onEvents?.(events, m, webhookId);
      if (m === "fail") {
        res.writeHead(500, { "content-type": "text/plain" }).end("injected failure");
        return;
      }
      if (m === "hold") await hold(res, holdMs);
      if (m === "slow") await hold(res, slowMs);
      if (m === "never") await hold(res, Infinity);
      if (!res.destroyed) res.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 5_000;
  server.on("connection", (socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const receiver = {
    port,
    url: `http://127.0.0.1:${port}/hooks`,
    logFile,
    verifier: verifier.name,
    counts,
    /** Requests being held right now (hold, slow, never). */
    get holding() {
      return held.size;
    },
    /** Resolves when a request is being held, or with false after `timeoutMs`. */
    whenHolding(timeoutMs) {
      if (held.size > 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          holdWaiters.splice(holdWaiters.indexOf(w), 1);
          resolve(false);
        }, timeoutMs);
        const w = () => {
          clearTimeout(timer);
          resolve(true);
        };
        holdWaiters.push(w);
      });
    },
    /** The next request gets `m` ("hold", "fail", "reset", …) instead of a random draw. */
    forceNext(m) {
      forced = m;
    },
    /** Switches the failure mode ("faults", "never", or "healthy": every request answered at once). */
    setMode(m) {
      mode = m;
      if (m === "healthy") {
        failRate = holdRate = resetRate = slowRate = 0;
      }
    },
    onEvents: null,
    async close() {
      for (const s of open) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return receiver;
}
