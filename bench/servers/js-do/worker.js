// (B) The in-runtime limit: the smallest hibernatable Durable Object that relays a room's
// messages, written the way Cloudflare's WebSocket hibernation example does it. No storage, no
// protocol, no checks: every text frame goes as is to the room's other sockets.
export class Relay {
  constructor(ctx) {
    this.ctx = ctx;
  }

  fetch() {
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(sender, message) {
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
