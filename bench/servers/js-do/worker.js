// (B) The in-runtime limit: the smallest hibernatable Durable Object that relays a room's
// messages, written the way Cloudflare's WebSocket hibernation example does it. No protocol, no
// checks: every text frame goes as is to the room's other sockets.
//
// (S) The same object with DURABLE = "1": it first inserts each message into its SQLite storage,
// the one thing roomcast's room must do per message that B does not (the runtime's output gate
// then holds the frames until the write is durable). It prices durability in this runtime.
//
// (R) The same object with ENVELOPE = "1": it wraps each message in a frame shaped like
// roomcast's `message` frame (type, seq, from, user, id, data, ts) before relaying it, so the
// recipients get as many bytes as from roomcast. It prices the envelope: what B's relaying costs
// with roomcast's frame size and none of its protocol work. With ENVELOPE = "broadcast" (RB) the
// frame is shaped like roomcast's `broadcast` frame (type, from, user, data, ts), AE's control.
export class Relay {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.durable = env.DURABLE === "1";
    this.envelope = env.ENVELOPE === "1";
    this.broadcastEnvelope = env.ENVELOPE === "broadcast";
    this.seq = 0;
    if (this.durable) {
      ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, data TEXT NOT NULL)");
      this.seq = ctx.storage.sql.exec("SELECT COALESCE(MAX(seq), 0) AS seq FROM messages").one().seq;
    }
  }

  fetch() {
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(sender, message) {
    if (this.durable) this.ctx.storage.sql.exec("INSERT INTO messages (seq, data) VALUES (?, ?)", ++this.seq, message);
    if (this.envelope) {
      // The bench's members are "m<n>", its user "bench", its message ids the publisher's counter.
      const seq = ++this.seq;
      message = `{"type":"message","seq":${seq},"from":"m${seq % 1000}","user":"bench","id":"${seq}","data":${message},"ts":${Date.now()}}`;
    } else if (this.broadcastEnvelope) {
      const n = ++this.seq;
      message = `{"type":"broadcast","from":"m${n % 1000}","user":"bench","data":${message},"ts":${Date.now()}}`;
    }
    for (const ws of this.ctx.getWebSockets()) {
      if (ws === sender) continue;
      try {
        ws.send(message);
      } catch {
        // A closing socket; its close event follows.
      }
    }
  }

  webSocketClose(ws, code, reason) {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed.
    }
  }
}

export default {
  fetch(request, env) {
    const match = new URL(request.url).pathname.match(/^\/rooms\/([^/]+)\/ws$/);
    if (!match) return new Response("ok");
    return env.RELAY.get(env.RELAY.idFromName(match[1])).fetch(request);
  },
};
