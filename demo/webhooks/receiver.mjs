#!/usr/bin/env node
// A local webhook receiver to run next to `npm run dev`: `npm run demo:webhooks`.
//
// Listens on http://127.0.0.1:8788/ (PORT to change it; 0 picks a free port), verifies each POST
// with roomcast/server's verifyWebhook and WEBHOOK_SECRET (from the environment, else from the
// project's .dev.vars), prints one line per event and answers 204; a request whose signature or
// timestamp does not verify gets 401 and a line on stderr; a signed body that is not
// {"events":[{…},…]} gets 400. Any body gets one of these answers, never a crash or a 500: event
// fields are printed cut short (depth and length), so a value nested 100,000 deep prints like any
// other. To have the local edge send here, put in .dev.vars (then restart `npm run dev`):
//
//   WEBHOOK_URL=http://127.0.0.1:8788/
//   WEBHOOK_SECRET=whsec_…      (npm run demo:webhooks -- --new-secret prints a fresh one)
//
// A backend of your own does the same with the package: import { verifyWebhook } from "roomcast/server".
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { verifyWebhook, WebhookVerificationError } from "../../sdk/server/index.mjs";
import { devVar } from "../../tools/token.mjs";

/** Largest body read; the room sends at most ~256 KiB per POST. */
const MAX_BODY_BYTES = 1 << 20;
/** How many event ids are remembered to mark redeliveries (delivery is at least once). */
const SEEN_MAX = 10_000;
/** Values nested deeper than this print as `…`: JSON.stringify recurses, and a deep enough value
 * (10,000 levels fit in 20 KB) overflows the stack. The room sends at most 32 levels of data. */
const PRINT_DEPTH = 40;
/** The most characters of an event's fields printed on its line. */
const PRINT_CHARS = 2_000;

/**
 * `value` as JSON text, cut short: arrays and objects deeper than `depth` become `…`, and the text
 * stops after about `chars` characters with `…`. Never recurses deeper than `depth`, so any
 * parsed body prints. Numbers JSON cannot write (1e400 parses to Infinity) print as JavaScript
 * writes them.
 */
export function preview(value, { depth = PRINT_DEPTH, chars = PRINT_CHARS } = {}) {
  let out = "";
  const write = (v, level) => {
    if (out.length > chars) return;
    if (v === null || typeof v !== "object") {
      out += typeof v === "number" && !Number.isFinite(v) ? String(v) : (JSON.stringify(v) ?? String(v));
      return;
    }
    if (level >= depth) {
      out += "…";
      return;
    }
    const array = Array.isArray(v);
    out += array ? "[" : "{";
    let first = true;
    for (const key of Object.keys(v)) {
      if (out.length > chars) break;
      if (!first) out += ",";
      first = false;
      if (!array) out += `${JSON.stringify(key)}:`;
      write(v[key], level + 1);
    }
    out += array ? "]" : "}";
  };
  write(value, 0);
  return out.length > chars ? `${out.slice(0, chars)}…` : out;
}

/** One line for an event: its time, type, room, the fields that vary, and its id. */
export function formatEvent(event, { duplicate = false } = {}) {
  const { id, type, room, ts, ...rest } = event;
  const time = Number.isFinite(ts) ? new Date(ts).toISOString().slice(11, 23) : "??:??:??.???";
  const fields = Object.keys(rest).length ? ` ${preview(rest)}` : "";
  const text = (v) => (typeof v === "string" ? v : preview(v, { chars: 200 }));
  return `${time} ${text(type).padEnd(17)} ${text(room)}${fields} ${text(id)}${duplicate ? " (again: a redelivery)" : ""}`;
}

/** Whether a verified payload's events are all objects (what formatEvent and the dedup read). */
const eventsAreObjects = (events) => events.every((e) => e !== null && typeof e === "object" && !Array.isArray(e));

/**
 * Starts the receiver. Resolves with the node:http server once it listens; `server.address().port`
 * is the port. `log` gets each event's line, `warn` each refusal's.
 */
export function startReceiver({ secret, port = 8788, host = "127.0.0.1", log = console.log, warn = console.error } = {}) {
  const seen = new Set();
  const server = createServer((req, res) => {
    const answer = (status, text) => {
      res.writeHead(status, text ? { "content-type": "text/plain" } : {});
      res.end(text);
    };
    if (req.method !== "POST") return answer(405, "POST webhooks here\n");
    const chunks = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        tooLarge = true;
        warn(`refused: 413 body over ${MAX_BODY_BYTES} bytes`);
        res.writeHead(413, { "content-type": "text/plain", connection: "close" });
        res.end("too large\n", () => req.destroy()); // read no further
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", () => {}); // a client that goes away mid-body: nothing to answer
    req.on("end", async () => {
      if (tooLarge) return;
      try {
        const { events } = await verifyWebhook(Buffer.concat(chunks), req.headers, secret);
        if (!eventsAreObjects(events)) {
          // Signed, so from whoever holds the secret, but not events: refused for good (a 400
          // makes the room set the batch's offending event aside rather than retry it).
          warn(`refused: 400 bad_body: an event is not a JSON object (webhook-id ${req.headers["webhook-id"] ?? "none"})`);
          return answer(400, "bad_body\n");
        }
        for (const event of events) {
          const key = typeof event.id === "string" ? event.id : preview(event.id, { chars: 200 });
          const duplicate = seen.has(key);
          if (!duplicate) {
            seen.add(key);
            if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
          }
          log(formatEvent(event, { duplicate }));
        }
        answer(204);
      } catch (e) {
        if (!(e instanceof WebhookVerificationError)) {
          warn(`refused: 500 ${e?.stack ?? e}`);
          return answer(500, "receiver error\n");
        }
        const status = e.code === "bad_body" ? 400 : 401;
        warn(`refused: ${status} ${e.code}: ${e.message} (webhook-id ${req.headers["webhook-id"] ?? "none"})`);
        answer(status, `${e.code}\n`);
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--new-secret")) {
    console.log(`WEBHOOK_SECRET=whsec_${randomBytes(24).toString("base64")}`);
    process.exit(0);
  }
  const secret = process.env.WEBHOOK_SECRET || devVar("WEBHOOK_SECRET");
  if (!secret) {
    console.error(
      "demo:webhooks: no WEBHOOK_SECRET in the environment or .dev.vars. Add to .dev.vars:\n"
        + "  WEBHOOK_URL=http://127.0.0.1:8788/\n"
        + `  WEBHOOK_SECRET=whsec_${randomBytes(24).toString("base64")}\n`
        + "then restart `npm run dev` and run `npm run demo:webhooks` again.",
    );
    process.exit(2);
  }
  const port = process.env.PORT === undefined || process.env.PORT === "" ? 8788 : Number(process.env.PORT);
  try {
    // fails early, with a clear message, on a secret that is not whsec_ + base64
    await verifyWebhook("", {}, secret).catch((e) => {
      if (!(e instanceof WebhookVerificationError)) throw e;
    });
    const server = await startReceiver({ secret, port });
    const { address, port: bound } = server.address();
    console.log(`webhook receiver on http://${address}:${bound}/ — one line per event; Ctrl-C to stop`);
    const stop = () => {
      server.close(() => process.exit(0));
      server.closeAllConnections();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  } catch (e) {
    console.error(`demo:webhooks: ${e.code === "EADDRINUSE" ? `port ${port} is taken (PORT=… to use another)` : e.message}`);
    process.exit(2);
  }
}
