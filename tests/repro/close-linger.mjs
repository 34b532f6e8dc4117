// A minimal reproduction (issue #24): how long the TCP connection of a WebSocket stays open after
// the server closes it, for a Durable Object that accepted the socket with the hibernation API
// (`ctx.acceptWebSocket`) and for one that did not (`ws.accept()`), on the project's workerd
// (Miniflare; no wrangler, no roomcast code). The client is a raw TCP socket speaking just enough
// WebSocket: it asks the object to close with a code, answers the close frame at once (as RFC 6455
// says), and times the moments the close frame came and TCP ended (FIN from the server).
//
//   node tests/repro/close-linger.mjs [--runs N] [--timeout-ms N] [--variant NAME]... [--options "&auto&attach"]
//
// Prints one line per run and variant: `lingerMs`, ms from the close frame to the end of TCP.
// Measured here (workerd 1.20260426.1, under Miniflare and under `wrangler dev` alike): every
// variant ends TCP within about 50 ms but `hibernation-at-open`, a hibernatable socket closed before
// its 101 left, which keeps TCP open about 10 s (until the object goes idle); closed once the 101
// is on its way (`hibernation-at-open-after`) or accepted without hibernation (`accept-at-open`,
// http::refused_socket's way) it ends at once. The options add what roomcast's room does beside
// (`auto`: the ping auto-response; `attach`: an attachment; `ext`, `proto`: its 101's headers;
// `send`: a held welcome; `internal`: the edge's own request to the object): none of them changes
// the result (nor `busy`: the upgrade's request kept busy by a 20 s waitUntil), nor a class that
// does not extend DurableObject, as workers-rs exports the room's (`start({ plainClass: true })`),
// nor the webSocketClose answers of the variants above. tests/e2e/close-linger.test.mjs runs the prompt variants, and the
// real edge.
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { parseArgs } from "node:util";
import { Miniflare } from "miniflare";

// Each variant: how the object accepts the socket and what it does on "close <code>" and on the
// client's close frame.
export const VARIANTS = {
  // the hibernation API, as roomcast's room does it: ctx.acceptWebSocket, then ws.close()
  hibernation: "acceptWebSocket; ws.close(code)",
  // the same, and ws.close() again from webSocketClose when the client's answer comes
  "hibernation-close-again": "acceptWebSocket; ws.close(code); webSocketClose: ws.close()",
  // the same, whose webSocketClose handler answers and then takes 3 s to settle
  "hibernation-slow-close-handler": "acceptWebSocket; ws.close(code); webSocketClose: ws.close(), 3 s",
  // the same, whose webSocketClose handler answers with the code and reason it got, as the room's
  "hibernation-echo-close": "acceptWebSocket; ws.close(code); webSocketClose(code, reason): ws.close(code, reason)",
  // the same, whose webSocketClose handler answers and then throws
  "hibernation-throwing-close-handler": "acceptWebSocket; ws.close(code); webSocketClose: ws.close(), throws",
  // the same, its attachment cleared before the close and again in webSocketClose (as the room does)
  "hibernation-attach-at-close":
    "acceptWebSocket; serializeAttachment(''); ws.close(code); webSocketClose: ws.close(), serializeAttachment('')",
  // the same, with an alarm pending (as a room's heartbeat sweep)
  "hibernation-alarm-pending": "acceptWebSocket; an alarm 20 s ahead; ws.close(code)",
  // the same, and a frame sent after the close (a fanout that reaches a closing socket)
  "hibernation-send-after-close": "acceptWebSocket; ws.close(code); ws.send()",
  // the same, the object keeping a reference to the closed socket
  "hibernation-kept": "acceptWebSocket; ws.close(code); the object keeps ws",
  // the hibernation API, closed by another request (as a backend's kick or history deletion)
  "hibernation-other-request": "acceptWebSocket; a later fetch: ws.close(code)",
  // the hibernation API, closed from an alarm (as a heartbeat or token timeout)
  "hibernation-alarm": "acceptWebSocket; an alarm: ws.close(code)",
  // the hibernation API, closed in the upgrade itself (as a refusal at open: 4409-4412)
  "hibernation-at-open": "acceptWebSocket; ws.close(code) before the 101",
  // a refusal at open without hibernation: ws.accept() and ws.close(code) before the 101
  "accept-at-open": "ws.accept(); ws.close(code) before the 101",
  // a refusal at open with hibernation, closed once the 101 is on its way
  "hibernation-at-open-after": "acceptWebSocket; the 101; then ws.close(code)",
  // the standard API: ws.accept(), then ws.close()
  accept: "ws.accept(); ws.close(code)",
  "accept-other-request": "ws.accept(); a later fetch: ws.close(code)",
};

export const workerSource = ({ plainClass = false } = {}) => `
import { DurableObject } from "cloudflare:workers";
export class Obj ${plainClass ? "" : "extends DurableObject "}{
  ${plainClass ? "constructor(state, env) { this.ctx = state; this.env = env; }" : ""}
  async fetch(request) {
    const url = new URL(request.url);
    const variant = url.searchParams.get("v");
    if (url.pathname === "/close") {
      // another request closes every socket of the variant
      const code = Number(url.searchParams.get("code"));
      for (const ws of variant.startsWith("hibernation") ? this.ctx.getWebSockets(variant) : this.open ?? []) ws.close(code, "bye");
      if (this.open) this.open = [];
      return new Response("closed");
    }
    const [client, server] = Object.values(new WebSocketPair());
    const code = Number(url.searchParams.get("code"));
    // roomcast's room sets an auto-response for its pings, and an attachment on each socket
    if (url.searchParams.has("auto")) this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('{"type":"ping"}', '{"type":"pong"}'));
    if (variant.startsWith("hibernation")) {
      this.ctx.acceptWebSocket(server, [variant]);
      if (url.searchParams.has("attach")) server.serializeAttachment("{}");
      // the upgrade's own request kept busy after its 101 (a task of its still running)
      if (url.searchParams.has("busy")) this.ctx.waitUntil(new Promise((r) => setTimeout(r, 20_000)));
      // roomcast's room sends its welcome once the 101 is on its way (platform::Held)
      if (url.searchParams.has("send")) setTimeout(() => server.send('{"type":"welcome"}'), 0);
      if (variant === "hibernation-at-open") server.close(code, "bye");
      if (variant === "hibernation-at-open-after") setTimeout(() => server.close(code, "bye"), 0);
    } else {
      server.accept();
      if (variant === "accept-at-open") server.close(code, "bye");
      (this.open ??= []).push(server);
      server.addEventListener("message", (e) => this.onMessage(server, e.data, variant));
    }
    // roomcast's room answers with these two headers (worker/src/room_object.rs, NO_EXTENSIONS)
    const headers = {};
    if (url.searchParams.has("ext")) headers["Sec-WebSocket-Extensions"] = "roomcast-no-compression";
    if (url.searchParams.has("proto")) headers["Sec-WebSocket-Protocol"] = "roomcast.v1";
    return new Response(null, { status: 101, webSocket: client, headers });
  }
  webSocketMessage(ws, data) {
    return this.onMessage(ws, data, this.ctx.getTags(ws)[0]);
  }
  async onMessage(ws, data, variant) {
    const code = Number(String(data).split(" ")[1]);
    if (variant.endsWith("at-open") || variant.endsWith("at-open-after")) return;
    if (variant === "hibernation-alarm") {
      this.code = code;
      await this.ctx.storage.setAlarm(Date.now() + 50);
    } else if (variant === "hibernation-alarm-pending") {
      await this.ctx.storage.setAlarm(Date.now() + 20_000);
      ws.close(code, "bye");
    } else if (variant === "hibernation-send-after-close") {
      ws.close(code, "bye");
      try { ws.send('{"type":"presence"}'); } catch {}
    } else if (variant === "hibernation-attach-at-close") {
      ws.serializeAttachment("");
      ws.close(code, "bye");
    } else if (variant === "hibernation-kept") {
      (this.kept ??= []).push(ws);
      ws.close(code, "bye");
    } else if (!variant.endsWith("other-request")) {
      ws.close(code, "bye");
    }
  }
  async alarm() {
    if (this.ctx.getWebSockets("hibernation-alarm").length === 0) return;
    for (const ws of this.ctx.getWebSockets("hibernation-alarm")) ws.close(this.code ?? 4001, "bye");
  }
  async webSocketClose(ws, code, reason) {
    // roomcast's room answers the client's close frame and then updates its state (a promise)
    if (this.ctx.getTags(ws)[0] === "hibernation-echo-close") {
      // as the room's webSocketClose does: answer with the code and reason that came
      ws.close(code, reason);
    }
    if (this.ctx.getTags(ws)[0] === "hibernation-attach-at-close") {
      ws.close(code, "bye");
      ws.serializeAttachment("");
    }
    if (this.ctx.getTags(ws)[0] === "hibernation-throwing-close-handler") {
      ws.close(code, "bye");
      throw new Error("webSocketClose failed");
    }
    if (this.ctx.getTags(ws)[0] === "hibernation-slow-close-handler") {
      try { ws.close(code, "bye"); } catch {}
      await new Promise((r) => setTimeout(r, 3000));
    }
    if (this.ctx.getTags(ws)[0] === "hibernation-close-again") {
      try { ws.close(1000, "done"); } catch {}
    }
  }
}
export default {
  fetch(request, env) {
    // one object per set of options: an auto-response stays set on its object
    const url = new URL(request.url);
    const stub = env.OBJ.get(env.OBJ.idFromName(url.searchParams.has("auto") ? "auto" : "plain"));
    // roomcast's edge sends the room a request of its own, not the client's
    if (url.searchParams.has("internal") && url.pathname !== "/close") {
      return stub.fetch(new Request(\`https://room/ws\${url.search}\`, { headers: { Upgrade: request.headers.get("Upgrade") ?? "" } }));
    }
    return stub.fetch(request);
  },
};
`;

/** One WebSocket over raw TCP: sends "close <code>", answers the close frame, times TCP's end. */
export function closeOnce(port, variant, code, timeoutMs, options = "") {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const key = randomBytes(16).toString("base64");
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    let closeAt = null;
    let closeCode = null;
    const started = performance.now();
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ variant, code, closeCode, lingerMs: null, note: `TCP still open ${timeoutMs} ms after the close frame` });
    }, timeoutMs);
    const frame = (opcode, payload) => {
      const mask = randomBytes(4);
      const body = Buffer.from(payload);
      const masked = Buffer.from(body.map((b, i) => b ^ mask[i % 4]));
      return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | body.length]), mask, masked]);
    };
    socket.on("connect", () => {
      socket.write(
        `GET /?v=${encodeURIComponent(variant)}&code=${code}${options} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
          + (options.includes("proto") ? "Sec-WebSocket-Protocol: roomcast.v1\r\n" : "")
          + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString();
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(head));
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        socket.write(frame(0x1, `close ${code}`));
        if (variant.endsWith("other-request"))
          fetch(`http://127.0.0.1:${port}/close?v=${encodeURIComponent(variant)}&code=${code}${options}`);
      }
      while (buffer.length >= 2) {
        const opcode = buffer[0] & 0x0f;
        const len = buffer[1] & 0x7f; // the server's frames here are short and unmasked
        if (buffer.length < 2 + len) return;
        const payload = buffer.subarray(2, 2 + len);
        buffer = buffer.subarray(2 + len);
        if (opcode === 0x8 && closeAt === null) {
          closeAt = performance.now();
          closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : null;
          socket.write(frame(0x8, payload.subarray(0, 2))); // the close handshake's answer
        }
      }
    });
    socket.on("end", () => socket.end());
    socket.on("close", () => {
      clearTimeout(timer);
      const now = performance.now();
      resolve({
        variant,
        code,
        closeCode,
        lingerMs: closeAt === null ? null : Math.round(now - closeAt),
        totalMs: Math.round(now - started),
      });
    });
    socket.on("error", reject);
  });
}

export async function start({ compatibilityDate = "2026-04-01", compatibilityFlags = [], plainClass = false } = {}) {
  const mf = new Miniflare({
    modules: true,
    script: workerSource({ plainClass }),
    compatibilityDate,
    compatibilityFlags,
    durableObjects: { OBJ: { className: "Obj", useSQLite: true } },
    host: "127.0.0.1",
    port: 0,
  });
  const url = await mf.ready;
  return { mf, port: Number(url.port) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values: args } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      "timeout-ms": { type: "string", default: "30000" },
      variant: { type: "string", multiple: true },
      "compat-date": { type: "string", default: "2026-04-01" },
      flag: { type: "string", multiple: true, default: [] },
      options: { type: "string", default: "" },
    },
  });
  const { mf, port } = await start({ compatibilityDate: args["compat-date"], compatibilityFlags: args.flag });
  try {
    for (const variant of args.variant ?? Object.keys(VARIANTS)) {
      for (let i = 0; i < Number(args.runs); i++) {
        console.log(JSON.stringify(await closeOnce(port, variant, 4001, Number(args["timeout-ms"]), args.options)));
      }
    }
  } finally {
    await mf.dispose();
  }
}
