// The browser side of the SDK's wasm (sdk/src): the WebSocket, the timers and the listeners each
// connection's Rust half asks for, and the events it emits. The boundary is plain numbers and
// strings in the instance's memory (no wasm-bindgen: see sdk/README.md, Size).
//
// Events from the wasm are queued and dispatched only once no call into it is running, so the
// app's handlers may call publish() or close() from anywhere: the instance is never re-entered.

// The wasm, gzipped by the build and inlined (as base64) into the package file: base64 of the
// raw wasm gzips to 10.6 KB, of the gzipped wasm to 8.2 KB.
import gzipped from "../pkg/roomcast_sdk.wasm.gz";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const STATES = ["connecting", "open", "reconnecting", "closed"];
/** The subprotocol the server selects (roomcast_protocol::SUBPROTOCOL). */
const SUBPROTOCOL = "roomcast.v1";

/** id -> the connection's host: its Room, socket, timer and listeners. */
const hosts = new Map();
const queue = [];
let depth = 0;
let given;
let wasm;

const text = (ptr, len) => decoder.decode(new Uint8Array(wasm.memory.buffer, ptr, len));

/** Copies a string into a buffer the export takes over: [ptr, len]. */
function str(s) {
  const b = encoder.encode(s);
  const ptr = wasm.alloc(b.length);
  new Uint8Array(wasm.memory.buffer, ptr, b.length).set(b);
  return [ptr, b.length];
}

/** Runs a call into the wasm, then (outermost only) dispatches the events it queued. */
function call(f) {
  depth++;
  let result;
  try {
    result = f(wasm);
  } finally {
    depth--;
  }
  while (!depth && queue.length) {
    const [h, kind, payload] = queue.shift();
    h.room._dispatch(kind, payload);
  }
  return result;
}

const emit = (h, kind, payload) => queue.push([h, kind, payload]);

function wake(h) {
  if (globalThis.document?.visibilityState !== "hidden") call((w) => w.conn_wake(h.id));
}

function detach(h) {
  const ws = h.ws;
  h.ws = null;
  if (ws) ws.onmessage = ws.onclose = null;
  return ws;
}

const isSeq = (n) => Number.isSafeInteger(n) && n >= 0;
const isStr = (s) => typeof s === "string";
const isMember = (m) => isStr(m?.user);
/**
 * The frames the server sends, each with the fields the SDK reads (unknown fields are ignored).
 * A frame that fails its check is not acted on: it is reported as a `bad_frame` error.
 */
const SHAPES = {
  __proto__: null,
  welcome: (f) => isStr(f.epoch) && isSeq(f.seq) && Array.isArray(f.members) && f.members.every(isMember) && (f.expires === undefined || isSeq(f.expires)),
  message: (f) => isSeq(f.seq) && isStr(f.from) && isStr(f.user),
  ack: (f) => isStr(f.id) && (f.seq === undefined || isSeq(f.seq)),
  error: (f) => isStr(f.code),
  pong: () => true,
  presence: (f) => isMember(f.member) && isStr(f.event),
  direct: (f) => isStr(f.from) && isStr(f.user),
  refreshed: (f) => isSeq(f.expires),
};

/** Why a parsed line is not a frame the SDK can act on, or "" if it is. */
function invalid(f) {
  if (f === undefined) return "not JSON";
  if (typeof f?.type !== "string") return "not a frame";
  if (!SHAPES[f.type]) return `unknown frame type ${f.type}`;
  return SHAPES[f.type](f) ? "" : `invalid ${f.type} frame`;
}

/**
 * One message from socket `ws`: one frame per line (the room may coalesce several). A line the
 * SDK cannot trust is an `error` event, never silence; a seq out of order makes the wasm half
 * drop the socket, and the rest of its lines with it (the resume covers them).
 */
function onMessage(h, ws, data) {
  call((w) => {
    const lines = typeof data === "string" ? data.split("\n") : [];
    if (!lines.length) emit(h, "error", { code: "bad_frame", message: "a binary message", frame: "" });
    for (const line of lines) {
      if (h.ws !== ws) return;
      let f;
      try { f = JSON.parse(line); } catch {}
      const why = invalid(f);
      if (why) {
        emit(h, "error", { code: "bad_frame", message: why, frame: line.slice(0, 200) });
        continue;
      }
      const o = h.options;
      switch (f.type) {
        case "welcome": {
          const status = f.resume?.status;
          emit(h, "welcome", f);
          w.conn_welcome(h.id, ...str(f.epoch), f.seq, status ? (status === "recovered" ? 1 : 2) : 0, ...str(String(f.resume?.reason ?? "")), f.expires ?? -1);
          break;
        }
        case "message":
          // With echo off the room still replays this client's own messages (so a replay has no
          // holes); they move lastSeq on but are not delivered.
          if (w.conn_message(h.id, f.seq) && (o.echo || f.from !== o.clientId)) emit(h, "message", f);
          break;
        case "ack":
          w.conn_settled(h.id, ...str(f.id), f.seq ?? -1, ...str(""));
          break;
        case "error":
          if (isStr(f.id)) w.conn_settled(h.id, ...str(f.id), -1, ...str(f.code));
          else emit(h, "error", f);
          break;
        case "pong":
          w.conn_pong(h.id);
          break;
        case "refreshed":
          w.conn_refreshed(h.id, f.expires);
          break;
        default:
          emit(h, f.type, f);
      }
    }
  });
}

const imports = {
  host: {
    now: Date.now,
    ws_open(id, ep, epLen, since) {
      const h = hosts.get(id);
      const o = h.options;
      let url = `${o.endpoint}?errors=close&cid=${encodeURIComponent(o.clientId)}${o.echo ? "&echo=1" : ""}`;
      if (since >= 0) url += `&since=${since}&epoch=${encodeURIComponent(text(ep, epLen))}`;
      const token = typeof o.token === "function" ? h.token : o.token;
      let ws;
      try {
        ws = new WebSocket(url, token ? [SUBPROTOCOL, `bearer.${token}`] : [SUBPROTOCOL]);
      } catch {
        return 0;
      }
      h.ws = ws;
      ws.onmessage = (e) => onMessage(h, ws, e.data);
      ws.onclose = (e) => {
        detach(h);
        call((w) => w.conn_closed(id, e.code, ...str(e.reason)));
      };
      return 1;
    },
    ws_send(id, ptr, len) {
      hosts.get(id)?.ws?.send(text(ptr, len));
    },
    ws_refresh(id) {
      const h = hosts.get(id);
      h?.ws?.send(JSON.stringify({ type: "refresh", token: h.token }));
    },
    ws_close(id, code, ptr, len) {
      const h = hosts.get(id);
      const ws = h && detach(h);
      if (ws && ws.readyState < 2) ws.close(code, text(ptr, len));
    },
    timer_set(id, delay) {
      const h = hosts.get(id);
      clearTimeout(h.timer);
      h.timer = setTimeout(() => {
        h.timer = null;
        call((w) => w.conn_timer(id));
      }, Math.min(delay, 2 ** 31 - 1)); // longer delays would fire at once
    },
    timer_clear(id) {
      const h = hosts.get(id);
      if (h) {
        clearTimeout(h.timer);
        h.timer = null;
      }
    },
    wake_listen(id) {
      const h = hosts.get(id);
      h.onWake = () => wake(h);
      globalThis.addEventListener?.("online", h.onWake);
      globalThis.document?.addEventListener("visibilitychange", h.onWake);
    },
    wake_unlisten(id) {
      const h = hosts.get(id);
      if (!h?.onWake) return;
      globalThis.removeEventListener?.("online", h.onWake);
      globalThis.document?.removeEventListener("visibilitychange", h.onWake);
      h.onWake = null;
    },
    fetch_token(id) {
      emit(hosts.get(id), "token");
    },
    emit_status(id, state, attempt, delayMs, code, ptr, len) {
      const h = hosts.get(id);
      h.state = STATES[state];
      emit(h, "status", { state: h.state, attempt, delayMs, code, reason: text(ptr, len) });
    },
    emit_gap(id, ptr, len, since) {
      emit(hosts.get(id), "gap", { reason: text(ptr, len), since });
    },
    emit_out_of_order(id, expected, received) {
      const message = `seq ${received} arrived when ${expected} was next; resuming from ${expected - 1}`;
      emit(hosts.get(id), "error", { code: "out_of_order", message, expected, received });
    },
    emit_settled(id, ptr, len, seq, codePtr, codeLen) {
      const code = text(codePtr, codeLen);
      emit(hosts.get(id), code ? "reject" : "ack", { id: text(ptr, len), seq: seq < 0 ? undefined : seq, code });
    },
    give(ptr, len) {
      given = text(ptr, len);
    },
  },
};

const bytes = await new Response(new Blob([gzipped]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
wasm = (await WebAssembly.instantiate(bytes, imports)).instance.exports;

let nextId = 1;

/**
 * The host of one connection, driven by `room` (its `_dispatch` gets the events). The wasm half
 * starts when `start()` is called.
 */
export class Host {
  constructor(room, options) {
    this.room = room;
    this.options = options;
    this.id = nextId++;
    this.state = "connecting";
    this.ws = this.timer = this.onWake = this.token = null;
  }

  start() {
    if (hosts.has(this.id) || this.finalSeq !== undefined) return;
    const o = this.options;
    const n = (v) => (typeof v === "number" ? v : NaN);
    hosts.set(this.id, this);
    call((w) => w.conn_new(this.id, n(o.seed ?? Math.random() * 2 ** 53), typeof o.token === "function",
      n(o.minReconnectDelayMs), n(o.maxReconnectDelayMs), n(o.reconnectFactor), o.jitter !== false,
      n(o.minUptimeMs), n(o.connectTimeoutMs), n(o.pingIntervalMs), n(o.pongTimeoutMs), n(o.queueMax)));
  }

  /** The token function's result (undefined: it failed), for a connection attempt or a refresh. */
  setToken(token) {
    if (!hosts.has(this.id)) return;
    this.token = token ?? null;
    call((w) => w.conn_token(this.id, token !== undefined));
  }

  /** Queues a publish or direct message: its id, or 1 (queue full), 2 (closed), 3 (offline). */
  send(to, data) {
    if (!hosts.has(this.id)) return 2;
    const code = call((w) => (to === undefined ? w.conn_publish(this.id, ...str(data)) : w.conn_send_to(this.id, ...str(to), ...str(data))));
    return code || given;
  }

  lastSeq() {
    return hosts.has(this.id) ? call((w) => w.conn_last_seq(this.id)) : this.finalSeq ?? 0;
  }

  close() {
    call((w) => w.conn_close(this.id));
    this.free();
  }

  /** Drops the wasm half (it already released the socket, timer and listeners when it closed). */
  free() {
    if (!hosts.has(this.id)) return;
    this.finalSeq = call((w) => w.conn_last_seq(this.id));
    call((w) => w.conn_free(this.id));
    hosts.delete(this.id);
  }

  /** For tests: open [sockets, timers, listeners]. */
  resources() {
    return [this.ws ? 1 : 0, this.timer ? 1 : 0, this.onWake ? 2 : 0];
  }
}
