// The browser side of the SDK's wasm (sdk/src): the WebSocket, the timers and the listeners each
// connection's Rust half asks for, and the events it emits. The boundary is plain numbers and
// strings in the instance's memory (no wasm-bindgen: see sdk/README.md, Size).
//
// Events from the wasm are queued and dispatched only once no call into it is running, so the
// app's handlers may call publish() or close() from anywhere: the instance is never re-entered.
// Every resource gets its own id, and the Rust value holding it releases exactly that resource.
// No import throws: what the WebSocket or the clock throws is caught and reported as an `error`
// event (`host_error`, with what was thrown as its `cause`) of the connection whose call ran.

// The wasm, deflated by the build (zlib format) and inlined as text into the package file (esbuild's text
// loader): read as a Huffman-coded text whose code follows this JavaScript's own character
// frequencies, so the page's gzip codes both with one Huffman table at little cost (each character
// stands for its code's bits: sdk/examples/pack.rs; sdk/README.md, Size).
import packed from "../pkg/roomcast_sdk.wasm.txt";
import {
  EV_CLOSE,
  EV_CLOSED,
  EV_EXPIRED,
  EV_GAP,
  EV_LAST_SEQ,
  EV_MARK,
  EV_MARK_READ,
  EV_MESSAGE,
  EV_NETWORK,
  EV_NUDGE,
  EV_PONG,
  EV_REFRESHED,
  EV_SETTLED,
  EV_TIMER,
  EV_TOKEN,
  EV_VISIBILITY,
  EV_WAKE,
  EV_WATCH,
} from "./events.js";
import { isStr, SHAPES } from "./shapes.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// The numbers that cross the wasm boundary, by position, as protocol/src/client/abi.rs numbers
// them (a test there checks these three lines, and js/events.js's `EV_…` constants).
const STATES = ["connecting", "open", "reconnecting", "closed"];
const FAILURES = [, "queue_full", "closed", "offline", "too_large"];
const RESUMED = ["", "recovered", "not_recovered"];
/** The subprotocol the server selects (roomcast_protocol::SUBPROTOCOL). */
const SUBPROTOCOL = "roomcast.v1";

/** Connection id -> its host. */
const hosts = new Map();
/** Resource id -> { h: its connection's host, k: 0 socket | 1 timer | 2 listeners, _free(code, reason), _ws }. */
const owned = new Map();
const queue = [];
let nextId = 1;
let depth = 0;
/** The host whose call into the wasm is running. */
let current;
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

/** Runs a call into the wasm for host `h`, then (outermost only) dispatches the events it queued. */
function call(h, f) {
  const outer = current;
  current = h;
  depth++;
  let result;
  try {
    result = f(wasm);
  } finally {
    depth--;
    current = outer;
  }
  while (!depth && queue.length) {
    const [h, kind, payload] = queue.shift();
    h._room._dispatch(kind, payload);
  }
  return result;
}

const emit = (h, kind, payload) => queue.push([h, kind, payload]);

/**
 * Tells host `h`'s wasm half of event `ev` (`conn_event`: an `EV_…` number, texts `a` and `b`,
 * numbers `x`, `y`, `z`, NaN when absent); what it answers.
 */
const event = (h, ev, a = "", b = "", x, y, z) => call(h, (w) => w.conn_event(h._id, ev, ...str(a), ...str(b), x, y, z));

/** A resource of host `h`: its id. */
function own(h, k, free, ws) {
  const id = nextId++;
  owned.set(id, { h, k, _free: free, _ws: ws });
  return id;
}

/** Whether the page is visible (1) or hidden (0); NaN without a document (the machine's default). */
const visible = () => {
  const d = globalThis.document;
  return d ? +(d.visibilityState !== "hidden") : NaN;
};

/**
 * Reports what crosses host `h`'s socket to the `debug` or `logger` option's function, if any:
 * connects, frames both ways, closes. Tokens are never logged (they travel in the subprotocol,
 * and in `refresh` frames, which are logged without theirs).
 */
const log = (h, kind, detail) => h._options._log?.(kind, detail);

/** The wait a close's reason names (a 4029's `; retryAfterMs=<n>`: protocol/src/close.rs), else NaN. */
const waitOf = (reason) => +/; retryAfterMs=(\d+)$/.exec(reason)?.[1];

const detach = (ws) => {
  ws.onmessage = ws.onclose = null;
};

/** Session `h`'s socket went (closed, or given up on): every room's join went with it. */
function dropJoins(h, reason, code) {
  h._open = false;
  for (const r of h._rooms?.values() ?? []) {
    if (!owned.delete(r._vsid)) continue;
    // A join still waiting for the socket ends with it: sent on the next socket, it was answered
    // while the room was backing off (the answer lost), and the room's own next join was then
    // refused as "already joined" until its connect timeout (issue #23).
    r._pendingJoin = null;
    event(r, EV_CLOSED, reason, "", r._vsid, code);
  }
}

/** Hands an answer to the wasm half (`code`: the room's refusal), which settles the call it names. */
function answered(h, f, seq, code) {
  // the settlement the wasm emits for this id carries the frame (a history page, an error's message)
  h._answer = f;
  event(h, EV_SETTLED, f.id, code, seq);
  h._answer = null;
}

/** What the wasm half does with each server frame it acts on (SHAPES has checked it). */
const READ = {
  welcome(h, f) {
    const l = f.limits;
    emit(h, "welcome", f);
    wasm.conn_welcome(
      h._id,
      ...str(f.epoch),
      f.seq,
      f.resume ? (f.resume.status === RESUMED[1] ? 1 : 2) : 0,
      ...str(String(f.resume?.reason ?? "")),
      f.expires,
      f.heartbeat?.interval,
      l?.maxFrameBytes,
      f.rewind?.replayed,
      l?.broadcastMaxBytes,
      l?.presenceMetaMax,
    );
  },
  message(h, f) {
    // With echo off the room still replays this client's own messages (so a replay has no
    // holes); they move lastSeq on but are not delivered.
    const o = h._options;
    if (event(h, EV_MESSAGE, "", "", f.seq) && (o.echo || f.from !== o.clientId)) emit(h, "message", f);
  },
  ack: (h, f) => answered(h, f, f.seq ?? -1, ""),
  history: (h, f) => answered(h, f, -1, ""),
  error: (h, f) => (isStr(f.id) ? answered(h, f, -1, f.code) : emit(h, "error", f)),
  pong: (h) => event(h, EV_PONG),
  mark: (h, f) => event(h, EV_MARK, f.id),
  refreshed(h, f) {
    event(h, EV_REFRESHED, "", "", f.expires);
    // A session socket: rooms that left when its token expired join again now.
    for (const r of h._rooms?.values() ?? []) if (r._state === "reconnecting") event(r, EV_WAKE);
  },
  // A session socket's first frame: the link is open (as a room's welcome opens a room). Its rooms
  // then join at once: those waiting for it, and those backing off since it dropped.
  session(h, f) {
    emit(h, "session", f);
    wasm.conn_welcome(h._id, ...str(""), 0, 0, ...str(""), f.expires, NaN, NaN, NaN, NaN, NaN);
    h._open = true;
    for (const r of h._rooms.values()) {
      if (r._pendingJoin) h._ws.send(r._pendingJoin);
      else event(r, EV_WAKE);
      r._pendingJoin = null;
    }
  },
  watch: (h, f) => emit(h, "watch", f),
  read_position: (h, f) => emit(h, "read_position", f),
};

/**
 * A frame of session `h` for one of its rooms (`r`): what the room's socket would have got, its
 * `joined` as the welcome (without a heartbeat: the session's socket pings), its `left` as the
 * close of its join.
 */
const ROOM_READ = {
  joined(r, f) {
    r._joinedSid = r._vsid;
    READ.welcome(r, { ...f, heartbeat: undefined });
  },
  left(r, f) {
    const sid = r._vsid;
    // A 1000 `left` before this join's `joined` answers an earlier `leave` of the room (the app
    // left and joined again at once, or a join timed out): the session answers in order and never
    // refuses a join with 1000, so it is not this join's end.
    if (f.code === 1000 && r._joinedSid !== sid) return;
    owned.delete(sid);
    event(r, EV_CLOSED, f.reason, "", sid, f.code, waitOf(f.reason));
    // The session socket's token expired (the socket stays): it refreshes, then the room rejoins.
    if (f.code === 4002) event(r._options._link, EV_EXPIRED);
  },
  gap: (r, f) => event(r, EV_GAP, "", "", f.until),
};

/**
 * One message from socket `sid`: one frame per line (the room may coalesce several). A line the
 * SDK cannot trust is an `error` event, never silence; a seq out of order makes the wasm half
 * drop the socket, and the rest of its lines with it (the resume covers them). Frames the wasm
 * half does not act on (presence, direct, broadcast) go to the API layer.
 */
function onMessage(h, sid, data) {
  call(h, () => {
    const lines = isStr(data) ? data.split("\n") : [];
    if (!lines.length) emit(h, "error", { code: "bad_frame", message: "a binary message", frame: "" });
    for (const line of lines) {
      if (!owned.has(sid)) return;
      let f;
      try {
        f = JSON.parse(line);
      } catch {}
      const shape = SHAPES[f?.type];
      const why = f === undefined ? "not JSON" : !isStr(f?.type) ? "not a frame" : shape && !shape(f) && `invalid ${f.type} frame`;
      // A session socket's room frame goes to that room (the session's own frames carry no
      // room, but for its watch and read positions); one for a room it has not joined is dropped.
      if (why) emit(h, "error", { code: "bad_frame", message: why, frame: line.slice(0, 200) });
      else if (h._rooms && isStr(f.room) && f.type !== "watch" && f.type !== "read_position") {
        const r = shape && h._rooms.get(f.room);
        if (r) call(r, () => (ROOM_READ[f.type] ?? READ[f.type] ?? ((r) => emit(r, f.type, f)))(r, f));
      } else if (shape) (READ[f.type] ?? ((h) => emit(h, f.type, f)))(h, f);
    }
  });
}

const imports = {
  now: (id) => hosts.get(id)._clock.now(),
  ws_open(id, ep, epLen, since) {
    const h = hosts.get(id);
    const o = h._options;
    let url = `${o.endpoint}?errors=close&cid=${encodeURIComponent(o.clientId)}`;
    // (a session socket resumes nothing: its rooms do, each in its join)
    if (!h._rooms) {
      if (o.echo) url += "&echo=1";
      // Without a resume point (the first connection, or none welcomed yet) the room rewinds.
      if (since >= 0) url += `&since=${since}&epoch=${encodeURIComponent(text(ep, epLen))}`;
      else if (o.rewind) url += `&rewind=${o.rewind}`;
    }
    const token = typeof o.token === "function" ? h._token : o.token;
    log(h, "connect", url);
    // A constructor that throws (a URL or subprotocol the browser refuses) returns 0 (see guard).
    const ws = new o.WebSocket(url, token ? [SUBPROTOCOL, `bearer.${token}`] : [SUBPROTOCOL]);
    const sid = own(
      h,
      0,
      (code = 1000, reason = "") => {
        detach(ws);
        if (ws.readyState < 2) {
          log(h, "close", { code, reason });
          ws.close(code, reason);
        }
        // (after the wasm call that gave it up has returned)
        if (h._rooms) queueMicrotask(() => dropJoins(h, reason, code));
      },
      ws,
    );
    ws.onmessage = (e) => {
      log(h, "receive", e.data);
      onMessage(h, sid, e.data);
    };
    ws.onclose = (e) => {
      log(h, "closed", { code: e.code, reason: e.reason });
      owned.delete(sid);
      detach(ws);
      event(h, EV_CLOSED, e.reason ?? "", "", sid, e.code, waitOf(e.reason));
      dropJoins(h, e.reason ?? "", e.code);
    };
    h._ws = ws;
    return sid;
  },
  ws_join(id, ptr, len) {
    const r = hosts.get(id);
    const link = r._options._link;
    const t = text(ptr, len);
    // Released (the room gave up on it, or left), a join not sent yet never goes.
    r._vsid = own(r, 0, () => (r._pendingJoin = null), { send: (t) => link._open && link._ws.send(t) });
    if (link._open) link._ws.send(t);
    else r._pendingJoin = t;
    return r._vsid;
  },
  ws_send(sid, ptr, len) {
    const r = owned.get(sid);
    if (r) {
      const t = text(ptr, len);
      // (a refresh frame's token is not logged)
      log(r.h, "send", t.startsWith('{"type":"refresh"') ? '{"type":"refresh","token":"(not logged)"}' : t);
      r._ws.send(t);
    }
  },
  ws_close(sid, code, ptr, len) {
    imports.release(sid, code, text(ptr, len));
  },
  timer_set(id, delay) {
    const h = hosts.get(id);
    const c = h._clock;
    const tid = own(h, 1, () => c.clearTimeout(t));
    const t = c.setTimeout(
      () => {
        owned.delete(tid);
        event(h, EV_TIMER, "", "", tid);
      },
      Math.min(delay, 2 ** 31 - 1),
    ); // longer delays would fire at once
    return tid;
  },
  wake_listen(id) {
    const h = hosts.get(id);
    // What the page says goes to the machine as it is (protocol/src/client/network.rs decides).
    const on = {
      online: () => event(h, EV_NETWORK, "", "", 1),
      offline: () => event(h, EV_NETWORK, "", "", 0),
      pageshow: () => visible() && event(h, EV_WAKE),
      visibilitychange: () => event(h, EV_VISIBILITY, "", "", visible()),
    };
    const d = globalThis.document;
    const each = (f) => {
      for (const [k, g] of Object.entries(on)) (k[0] === "v" ? d : globalThis)?.[f]?.(k, g);
    };
    each("addEventListener");
    return own(h, 2, () => each("removeEventListener"));
  },
  release(rid, code, reason) {
    const r = owned.get(rid);
    if (r) {
      owned.delete(rid);
      r._free(code, reason);
    }
  },
  fetch_token(id) {
    emit(hosts.get(id), "token");
  },
  emit_status(id, state, attempt, delayMs, code, ptr, len) {
    const h = hosts.get(id);
    // Open again after an outage: the page's other connections waiting out a backoff try now.
    if (state === 1 && h._state === STATES[2])
      queueMicrotask(() => {
        for (const o of hosts.values()) if (o !== h && !o._options._link) o._nudge();
      });
    h._state = STATES[state];
    emit(h, "status", { state: h._state, attempt, delayMs, code, reason: text(ptr, len) });
  },
  emit_gap(id, ptr, len, since) {
    emit(hosts.get(id), "gap", { reason: text(ptr, len), since });
  },
  emit_out_of_order(id, expected, received) {
    const message = `seq ${received} arrived when ${expected} was next; resuming from ${expected - 1}`;
    emit(hosts.get(id), "error", { code: "out_of_order", message, expected, received });
  },
  emit_settled(id, call, seq, codePtr, codeLen) {
    const h = hosts.get(id);
    emit(h, "settled", { id: call, seq: seq < 0 ? undefined : seq, code: text(codePtr, codeLen), _answer: h._answer });
  },
  give(ptr, len) {
    given = text(ptr, len);
  },
};

// The guard: no import throws into the wasm (an exception unwinding through the instance would
// skip its Rust cleanup). What was thrown becomes an error event; the import answers 0.
const guarded = {};
for (const [name, f] of Object.entries(imports)) {
  guarded[name] = (...a) => {
    try {
      return f(...a);
    } catch (e) {
      if (current) emit(current, "error", { code: "host_error", message: `${name}: ${e?.message ?? e}`, cause: e });
      return 0;
    }
  };
}

// (the layout: sdk/examples/pack.rs)
const codes = {};
const counts = packed.indexOf(",") + 1;
let at = counts + 16;
for (let length = 1, code = 0; length < 17; length++, code <<= 1) {
  for (let n = packed.charCodeAt(counts + length - 1) - 48; n--; ) codes[packed[at++]] = [code++, length];
}
const deflated = new Uint8Array(parseInt(packed, 10));
for (let acc = 0, bits = 0, j = 0; at < packed.length; at++) {
  const [code, length] = codes[packed[at]];
  acc = (acc << length) | code;
  bits += length;
  while (bits > 7) {
    bits -= 8;
    deflated[j++] = acc >> bits;
  }
}
const bytes = await new Response(new Response(deflated).body.pipeThrough(new DecompressionStream("deflate"))).arrayBuffer();
wasm = (await WebAssembly.instantiate(bytes, { host: guarded })).instance.exports;

/**
 * The host of one connection, driven by `room` (its `_dispatch` gets the events). The wasm half
 * starts when `start()` is called. `options` carries `WebSocket` and `clock` ({ now, setTimeout,
 * clearTimeout }), already resolved by the caller.
 */
export class Host {
  constructor(room, options) {
    this._room = room;
    this._options = options;
    this._clock = options.clock;
    this._id = nextId++;
    this._state = "connecting";
    this._token = this._answer = null;
    // A session socket knows its rooms' hosts by name; a room of one registers with it.
    if (options._session) this._rooms = new Map();
    options._link?._rooms.set(options.room, this);
  }

  _start() {
    if (hosts.has(this._id) || this._finalSeq !== undefined) return;
    const o = this._options;
    // Settings the app left out (or that are not numbers) arrive as NaN: the wasm's defaults.
    const n = (v) => (typeof v === "number" ? v : NaN);
    hosts.set(this._id, this);
    call(this, (w) =>
      w.conn_new(
        this._id,
        n(o.seed ?? Math.random() * 2 ** 53),
        typeof o.token === "function",
        n(o.minReconnectDelayMs),
        n(o.maxReconnectDelayMs),
        n(o.reconnectFactor),
        o.jitter !== false,
        n(o.minUptimeMs),
        n(o.connectTimeoutMs),
        n(o.pingIntervalMs),
        n(o.pongTimeoutMs),
        n(o.queueMax),
        n(o.maxTokenFailures),
        // a room of a session socket: its name (as JSON), its rewind and echo go in its join
        ...str(o._link ? JSON.stringify(o.room) : ""),
        n(o.rewind),
        !!o.echo,
      ),
    );
    // What the page is like at the start (a session's rooms follow their session's socket).
    if (!o._link) {
      if (globalThis.navigator?.onLine === false) event(this, EV_NETWORK, "", "", 0);
      event(this, EV_VISIBILITY, "", "", visible());
    }
  }

  /**
   * The token function's result (undefined: it failed; `away`: because its server could not be
   * reached, which does not count), for a connection attempt or a refresh.
   */
  _setToken(token, away) {
    if (!hosts.has(this._id)) return;
    this._token = token ?? null;
    event(this, EV_TOKEN, JSON.stringify(token) ?? "", "", token !== undefined || 2 * !!away);
  }

  /**
   * A call the room answers, on the wasm half (`conn_event`: an `EV_…` number, JSON texts `a` and `b`,
   * numbers `x`, `y`, `z`, NaN when absent): [its number (0 for a broadcast nobody answers), , the
   * id its frame carries], or [, why not (a FAILURES name), what the wasm gave with it]. Not
   * started yet, it is `offline`; freed, `closed`.
   */
  _request(ev, a = "", b = "", x = NaN, y = NaN, z = NaN) {
    if (!hosts.has(this._id)) return [, this._finalSeq === undefined ? FAILURES[3] : FAILURES[2]];
    const n = event(this, ev, a, b, x, y, z);
    return n < 0 ? [, FAILURES[-n], given] : [n, , given];
  }

  _lastSeq() {
    return hosts.has(this._id) ? event(this, EV_LAST_SEQ) : (this._finalSeq ?? 0);
  }

  _close() {
    event(this, EV_CLOSE);
    this._free();
  }

  /** A session socket's room: the user read it up to `seq`. */
  _markRead(seq) {
    if (hosts.has(this._id)) event(this, EV_MARK_READ, "", "", seq);
  }

  /** A session socket: the rooms it watches. */
  _watch(rooms) {
    if (hosts.has(this._id)) event(this, EV_WATCH, JSON.stringify(rooms));
  }

  /** Back online (the app says so): reconnect now if waiting, or check the link. */
  _wake() {
    if (hosts.has(this._id)) event(this, EV_WAKE);
  }

  /** Another connection of the page reconnected: reconnect now if waiting. */
  _nudge() {
    if (hosts.has(this._id)) event(this, EV_NUDGE);
  }

  /** Drops the wasm half (it already released the socket, timer and listeners when it closed). */
  _free() {
    if (!hosts.has(this._id)) return;
    this._finalSeq = event(this, EV_LAST_SEQ);
    call(this, (w) => w.conn_free(this._id));
    hosts.delete(this._id);
    const link = this._options._link;
    if (link?._rooms.get(this._options.room) === this) link._rooms.delete(this._options.room);
  }

  /** For tests: open [sockets, timers, listeners]. */
  _resources() {
    const n = [0, 0, 0];
    for (const r of owned.values()) if (r.h === this) n[r.k] += r.k > 1 ? 2 : 1;
    return n;
  }
}
