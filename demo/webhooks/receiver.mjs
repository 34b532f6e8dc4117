#!/usr/bin/env node
// A local webhook receiver to run next to `npm run dev`: `npm run demo:webhooks`.
//
// Listens on http://127.0.0.1:8788/ (PORT to change it; 0 picks a free port), verifies each POST
// with roomcast/server's verifyWebhook and WEBHOOK_SECRET (from the environment, else from the
// project's .dev.vars), prints one line per event and answers 204; a request whose signature or
// timestamp does not verify gets 401 and a line on stderr. To have the local edge send here, put
// in .dev.vars (then restart `npm run dev`):
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

/** One line for an event: its time, type, room, the fields that vary, and its id. */
export function formatEvent(event, { duplicate = false } = {}) {
  const { id, type, room, ts, ...rest } = event;
  const time = Number.isFinite(ts) ? new Date(ts).toISOString().slice(11, 23) : "??:??:??.???";
  const fields = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
  return `${time} ${String(type).padEnd(17)} ${room}${fields} ${id}${duplicate ? " (again: a redelivery)" : ""}`;
}

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
        for (const event of events) {
          const duplicate = seen.has(event.id);
          if (!duplicate) {
            seen.add(event.id);
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
