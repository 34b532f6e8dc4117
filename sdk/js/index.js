// roomcast browser SDK: the public API (see README.md and index.d.ts) around the Rust/wasm core.
// The wasm is inlined by the build and instantiated on import, so a page needs no init call.
import { Host } from "./host.js";

const EVENTS = ["message", "presence", "status", "gap", "direct", "broadcast", "error"];
/** Room names as the server takes them (protocol::name::validate_room). */
// A user-limited room (`dm~alice,bob`) lists user ids after a `~`; the server checks their order.
const ROOM_NAME = /^(?=.{1,128}$)[A-Za-z0-9_.:-]+(~[A-Za-z0-9_.:@-]{1,64}(,[A-Za-z0-9_.:@-]{1,64})*)?$/;
/** Client ids as the server takes them (protocol::name::validate_client_id). */
const CLIENT_ID = /^[A-Za-z0-9_-]{1,64}$/;
/**
 * The room's limits until a welcome states them: the server's defaults (maxFrameBytes is
 * protocol::client::DEFAULT_MAX_FRAME_BYTES; the others protocol::config::RoomConfig's).
 */
const DEFAULT_LIMITS = { maxFrameBytes: 65536, presenceMetaMax: 1024, broadcastMaxBytes: 16384 };
/** What a rejection says when the server said nothing. */
const TEXT = {
  queue_full: "the offline queue is full",
  closed: "the room is closed",
  offline: "not connected (direct messages, broadcasts and history reads are not queued)",
  disconnected: "the connection dropped before the room answered: the message may or may not have been delivered",
};

/**
 * Why a call failed: `code` (a server error code, or the SDK's: queue_full, closed, offline,
 * too_large, disconnected), the server's `message` when it sent one, `closeCode` when the room
 * closed, `cause` when the app's token function (or the WebSocket) caused it.
 */
class RoomcastError extends Error {
  constructor(code, message, { closeCode, cause, id } = {}) {
    super(message || TEXT[code] || code, cause === undefined ? undefined : { cause });
    this.name = "RoomcastError";
    this.code = code;
    if (closeCode !== undefined) this.closeCode = closeCode;
    if (id !== undefined) this.id = id;
  }
}
// The class keeps its name in the minified bundle (console output, error.constructor.name).
Object.defineProperty(RoomcastError, "name", { value: "RoomcastError" });

function endpoint(url, room) {
  const base = new URL(url, globalThis.location?.href);
  if (base.protocol === "http:") base.protocol = "ws:";
  if (base.protocol === "https:") base.protocol = "wss:";
  base.pathname = `${base.pathname.replace(/\/$/, "")}/rooms/${room}/ws`;
  base.search = "";
  return base.href;
}

function randomId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const quote = (v) => JSON.stringify(String(v).slice(0, 140));
const isFn = (f) => typeof f === "function";
const isStr = (s) => typeof s === "string";
const isCount = (n) => Number.isSafeInteger(n) && n >= 0;
const encoder = new TextEncoder();
/** UTF-8 bytes, as the room counts its limits. */
const bytes = (text) => encoder.encode(text).length;
/** An object literal (or Object.create(null)): no array, class instance, Date or Map. */
const isPlain = (v) => v !== null && typeof v === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(v));
/** A message frame (live, replayed or in a history answer) as the app sees it. */
const toMessage = (f) => {
  const m = { seq: f.seq, from: f.from, user: f.user, data: f.data, ts: f.ts };
  if (isStr(f.id)) m.id = f.id;
  return m;
};
const isMessage = (f) => isCount(f?.seq) && isStr(f.from) && isStr(f.user);

/**
 * The `WebSocket` option wrapped to report what crosses it to `log` (the `debug` and `logger`
 * options): connects, frames both ways, closes. Only wrapped when asked for, so logging off costs
 * nothing. Tokens are never logged (they travel in the subprotocol, and in `refresh` frames,
 * which are logged without theirs).
 */
function logged(WS, log) {
  return function LoggedWebSocket(url, protocols) {
    log("connect", url);
    const ws = new WS(url, protocols);
    const wrap = (kind, f, detail) => f && ((e) => { log(kind, detail(e)); f(e); });
    return {
      get readyState() { return ws.readyState; },
      set onmessage(f) { ws.onmessage = wrap("receive", f, (e) => e.data); },
      set onclose(f) { ws.onclose = wrap("closed", f, (e) => ({ code: e.code, reason: e.reason })); },
      send(text) {
        log("send", text.startsWith('{"type":"refresh"') ? '{"type":"refresh","token":"(not logged)"}' : text);
        ws.send(text);
      },
      close(code, reason) {
        log("close", { code, reason });
        ws.close(code, reason);
      },
    };
  };
}

/** The platform's clock, called the way the platform needs (unbound timers throw in browsers). */
const CLOCK = { now: () => Date.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };

class Room {
  #host;
  #handlers = new Map();
  #pending = new Map();
  #members = new Map();
  #token;
  /** Token fetches asked for; only the latest one's answer counts. */
  #fetches = 0;
  /** What made the client stop by itself (the token function's error, or the WebSocket's). */
  #cause;
  /** The `closed` status, once the room closed. */
  #closedBy;
  /** The last welcome's limits (the defaults before). */
  #limits = DEFAULT_LIMITS;
  #echo;
  /** The `debug` or `logger` option's function (undefined: logging off). */
  #log;
  /** Calls the API layer sends itself (history, broadcast) by id; they live and die with the socket. */
  #calls = new Map();
  #callIds = 0;
  /**
   * Presence meta (JSON text): `want`, the newest asked for, with the calls `waiters` waiting for
   * it; `inflight`, the one sent and not yet answered (one at a time: the newest wins); `applied`,
   * the last one the room took, sent again on every new connection.
   */
  #presence = { waiters: [] };

  constructor(options) {
    if (!options?.url || !options?.room) throw new TypeError("roomcast: connect() needs url and room");
    if (!ROOM_NAME.test(options.room)) {
      throw new TypeError(`roomcast: invalid room name ${quote(options.room)}: 1-128 characters of A-Z a-z 0-9 _ - . :`);
    }
    if (options.clientId !== undefined && !CLIENT_ID.test(options.clientId)) {
      throw new TypeError(`roomcast: invalid clientId ${quote(options.clientId)}: 1-64 characters of A-Z a-z 0-9 _ -`);
    }
    const WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!isFn(WebSocket)) {
      throw new TypeError("roomcast: no WebSocket here: pass one as the WebSocket option (on Node 20, the ws package's)");
    }
    const clock = options.clock ?? CLOCK;
    if (!isFn(clock.now) || !isFn(clock.setTimeout) || !isFn(clock.clearTimeout)) {
      throw new TypeError("roomcast: clock needs now(), setTimeout(fn, ms) and clearTimeout(handle)");
    }
    if (options.rewind !== undefined && !isCount(options.rewind)) {
      throw new TypeError(`roomcast: rewind must be a whole number of messages, not ${quote(options.rewind)}`);
    }
    if (options.logger !== undefined && !isFn(options.logger)) throw new TypeError("roomcast: logger must be a function (kind, detail)");
    const ep = endpoint(options.url, options.room);
    this.#token = options.token;
    this.#echo = !!options.echo;
    // One client id per connect() (per tab): the room filters echo by client id.
    this.clientId = options.clientId ?? randomId();
    const sink = options.logger ?? (options.debug ? (kind, detail) => console.debug(`roomcast ${options.room}:`, kind, detail) : undefined);
    // A logger that throws must not cost a frame: its error is rethrown on its own.
    const log = sink && ((kind, detail) => {
      try { sink(kind, detail); } catch (e) { queueMicrotask(() => { throw e; }); }
    });
    this.#log = log;
    this.#host = new Host(this, { ...options, WebSocket: log ? logged(WebSocket, log) : WebSocket, clock, clientId: this.clientId, endpoint: ep });
    // Start once the caller has had the chance to attach handlers (or at its first publish).
    queueMicrotask(() => this.#start());
  }

  #start() {
    if (!this.#closed) this.#host.start();
  }

  /** close() was called (perhaps before the connection started, when the host never ran). */
  #closed = false;

  get state() { return this.#closed ? "closed" : this.#host.state; }
  get lastSeq() { return this.#host.lastSeq(); }
  /** The room's limits from the last welcome (the server's defaults before one came). */
  get limits() { return { ...DEFAULT_LIMITS, ...this.#limits }; }

  on(event, handler) {
    if (!EVENTS.includes(event)) throw new TypeError(`roomcast: unknown event ${event}`);
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.#handlers.get(event)?.delete(handler);
  }

  publish(data) {
    // A publish right after connect() is queued like any other made while not yet open.
    this.#start();
    return this.#track(() => this.#host.send(undefined, JSON.stringify(data ?? null)), (ack) => ack.seq);
  }

  sendTo(target, data) {
    const to = target?.user !== undefined ? { user: String(target.user) } : { clientId: String(target?.clientId) };
    return this.#track(() => this.#host.send(JSON.stringify(to), JSON.stringify(data ?? null)), () => undefined);
  }

  /**
   * A page of stored messages over the socket (not queued: rejects `offline` when not open,
   * `disconnected` when the socket goes before the answer).
   */
  history({ limit, before, since } = {}) {
    const page = { limit, before, since };
    for (const [k, v] of Object.entries(page)) {
      if (v === undefined) delete page[k];
      else if (!isCount(v)) return Promise.reject(new TypeError(`roomcast: history ${k} must be a whole number, not ${quote(v)}`));
    }
    if (before !== undefined && since !== undefined) return Promise.reject(new TypeError("roomcast: history takes before or since, not both"));
    return this.#call("history", page);
  }

  /**
   * An ephemeral message to the room's other members: not stored, not queued. Resolves once sent
   * (refusals come as `error` events), or with `{ ack: true }` once the room answered.
   */
  broadcast(data, { ack = false } = {}) {
    return this.#call("broadcast", { data: data ?? null }, "broadcastMaxBytes", "broadcast", ack);
  }

  /**
   * Replaces this connection's presence meta. Not open, it waits for the connection (the newest
   * meta wins); the room takes it again on every reconnect.
   */
  setPresence(meta) {
    if (!isPlain(meta)) return Promise.reject(new TypeError("roomcast: setPresence(meta) takes a plain object"));
    let text;
    try {
      text = JSON.stringify(meta);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.state === "closed") return Promise.reject(this.#error("closed"));
    const max = this.#limits.presenceMetaMax ?? DEFAULT_LIMITS.presenceMetaMax;
    const size = bytes(text);
    if (size > max) {
      return Promise.reject(new RoomcastError("too_large", `the presence meta is ${size} bytes, over the room's limit (${max} bytes); it was not sent`));
    }
    this.#start();
    return new Promise((resolve, reject) => {
      const p = this.#presence;
      p.want = text;
      p.waiters.push({ resolve, reject });
      this.#sendPresence();
    });
  }

  members() { return Array.from(this.#members.values()); }

  close() {
    this.#closed = true;
    this.#host.close();
    // (before the connection started the host had nothing to close, and said nothing)
    this.#settleAll("closed");
  }

  /**
   * A frame the API layer sends itself, answered by the room (a `history` frame, an `ack`, or an
   * error naming its id). `limit` names the room's limit on the whole frame besides maxFrameBytes.
   */
  #call(type, fields, limit, what = type, answered = true) {
    return new Promise((resolve, reject) => {
      if (this.state === "closed") return reject(this.#error("closed"));
      const id = answered ? `${type[0]}-${++this.#callIds}` : undefined;
      const text = JSON.stringify({ type, id, ...fields });
      const size = bytes(text);
      const l = this.#limits;
      const max = Math.min(l.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes, limit ? l[limit] ?? DEFAULT_LIMITS[limit] : Infinity);
      if (size > max) return reject(new RoomcastError("too_large", `the ${what} is ${size} bytes, over the room's limit (${max} bytes); it was not sent`));
      try {
        if (!this.#host.post(text)) return reject(this.#error("offline"));
      } catch (e) {
        return reject(new RoomcastError("host_error", `the WebSocket's send failed: ${e?.message ?? e}`, { cause: e }));
      }
      if (!answered) return resolve();
      this.#calls.set(id, { type, resolve, reject });
    });
  }

  /** Sends the newest presence meta asked for, when open and none is in flight. */
  #sendPresence() {
    const p = this.#presence;
    if (p.inflight || p.want === undefined || this.#host.state !== "open") return;
    const id = `p-${++this.#callIds}`;
    const sent = { id, text: p.want, waiters: p.waiters, ws: this.#host.ws };
    try {
      if (!this.#host.post(`{"type":"presence","id":"${id}","meta":${p.want}}`)) return;
    } catch {
      return; // the socket is going: its close sends it again on the next connection
    }
    p.inflight = sent;
    p.want = undefined;
    p.waiters = [];
  }

  /** The presence call `id` was answered: `error` is the refusal, if any. */
  #presenceSettled(id, error) {
    const p = this.#presence;
    if (p.inflight?.id !== id) return false;
    const { text, waiters } = p.inflight;
    p.inflight = undefined;
    if (!error) p.applied = text;
    // The meta sent again after a reconnect has no caller: a refusal is an error event, and the
    // room keeps the token's meta until the app sets one again.
    else if (!waiters.length) {
      if (p.applied === text) p.applied = undefined;
      this.#emit("error", { code: error.code, message: error.message, id });
    }
    for (const w of waiters) error ? w.reject(error) : w.resolve();
    this.#sendPresence();
    return true;
  }

  /** A new connection is open: the meta the last one had (or was sending) goes again. */
  #reopened() {
    const p = this.#presence;
    if (p.inflight && p.inflight.ws !== this.#host.ws) {
      p.want ??= p.inflight.text;
      p.waiters = [...p.inflight.waiters, ...p.waiters];
      p.inflight = undefined;
    }
    p.want ??= p.applied;
    this.#sendPresence();
  }

  /**
   * The socket went (`disconnected`: history reads and broadcasts in flight reject, presence meta
   * waits for the next connection) or the room closed (`closed`: everything rejects).
   */
  #settleAll(code) {
    const calls = [...this.#calls.entries()];
    this.#calls.clear();
    for (const [id, c] of calls) {
      const message = code === "disconnected" && c.type === "history" ? "the connection dropped before the room answered" : undefined;
      c.reject(this.#error(code, message, id));
    }
    if (code !== "closed") return;
    const p = this.#presence;
    const waiters = [...(p.inflight?.waiters ?? []), ...p.waiters];
    this.#presence = { waiters: [] };
    for (const w of waiters) w.reject(this.#error(code));
  }

  #track(send, value) {
    return new Promise((resolve, reject) => {
      const [id, failure] = send();
      if (id) this.#pending.set(id, { resolve: (ack) => resolve(value(ack)), reject });
      else reject(this.#error(failure));
    });
  }

  /** The rejection for `code`, with what the SDK knows about it. */
  #error(code, message, id) {
    const c = this.#closedBy;
    if (code === "too_large") message ??= `the message is larger than the room's frame limit (${this.#limits.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes} bytes); it was not sent`;
    if (code !== "closed" || !c) return new RoomcastError(code, message, { id });
    return new RoomcastError(code, `the room is closed: ${c.reason}`, { closeCode: c.code, cause: c.code === 4000 ? this.#cause : undefined, id });
  }

  #emit(event, payload) {
    for (const h of this.#handlers.get(event) ?? []) {
      try { h(payload); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }

  /** A token fetch failed: reported with the app's error, and counted by the wasm half. */
  #tokenFailed(message, cause) {
    this.#cause = cause;
    this.#emit("error", { code: "token_failed", message, cause });
    this.#host.setToken(undefined);
  }

  /** Events from the host (see host.js); not part of the API. */
  _dispatch(kind, p) {
    switch (kind) {
      case "message":
        this.#emit("message", toMessage(p));
        break;
      case "broadcast":
        // echo as for messages: never this client id's own unless asked for
        if (this.#echo || p.from !== this.clientId) this.#emit("broadcast", { from: p.from, user: p.user, data: p.data, ts: p.ts });
        break;
      case "history": {
        const call = this.#calls.get(p.id);
        if (call?.type !== "history") break;
        this.#calls.delete(p.id);
        if (Array.isArray(p.messages) && p.messages.every(isMessage)) call.resolve({ messages: p.messages.map(toMessage), more: p.more === true });
        else call.reject(new RoomcastError("bad_frame", "the room's history answer is malformed", { id: p.id }));
        break;
      }
      case "welcome": {
        if (p.limits && typeof p.limits === "object") this.#limits = p.limits;
        const before = this.#members;
        this.#members = new Map(p.members.map((m) => [m.user, m]));
        const joined = p.members.filter((m) => !before.has(m.user));
        const left = [...before.keys()].filter((u) => !this.#members.has(u));
        // (after a reconnect: members whose count or meta changed meanwhile)
        const updated = p.members.filter((m) => before.has(m.user) && JSON.stringify(before.get(m.user)) !== JSON.stringify(m));
        this.#emit("presence", { members: this.members(), joined, left, updated });
        break;
      }
      case "presence": {
        const m = p.member;
        const isNew = !this.#members.has(m.user);
        if (p.event === "leave") this.#members.delete(m.user);
        else this.#members.set(m.user, m);
        this.#emit("presence", {
          members: this.members(),
          joined: p.event !== "leave" && isNew ? [m] : [],
          left: p.event === "leave" ? [m.user] : [],
          updated: p.event !== "leave" && !isNew ? [m] : [],
        });
        break;
      }
      case "ack": case "reject": {
        const error = kind === "reject" && this.#error(p.code, p.message, p.id);
        if (this.#presenceSettled(p.id, error)) break;
        const call = this.#calls.get(p.id);
        if (call) {
          this.#calls.delete(p.id);
          if (error) call.reject(error);
          else call.resolve();
          break;
        }
        const pending = this.#pending.get(p.id);
        if (!pending) {
          if (kind === "reject") this.#emit("error", { code: p.code, message: p.message, id: p.id });
          break;
        }
        this.#pending.delete(p.id);
        if (kind === "ack") pending.resolve(p);
        else pending.reject(this.#error(p.code, p.message, p.id));
        break;
      }
      case "token": {
        const n = ++this.#fetches;
        Promise.resolve()
          .then(() => (isFn(this.#token) ? this.#token() : this.#token))
          .then((t) => {
            if (n !== this.#fetches) return;
            if (typeof t === "string") this.#host.setToken(t);
            else this.#tokenFailed(`the token function resolved to ${t === null ? "null" : typeof t}, not a string`, t);
          }, (e) => {
            if (n === this.#fetches) this.#tokenFailed(`the token function failed: ${e?.message ?? e}`, e);
          });
        break;
      }
      case "direct":
        this.#emit("direct", { from: p.from, user: p.user, data: p.data, ts: p.ts });
        break;
      case "status":
        this.#log?.("status", p);
        if (p.state === "open") this.#cause = undefined;
        if (p.state === "closed") this.#closedBy = p;
        // Calls bound to the socket settle, and the presence meta goes again, before the app hears
        // of the change.
        if (p.state === "open") this.#reopened();
        else this.#settleAll(p.state === "closed" ? "closed" : "disconnected");
        this.#emit("status", p);
        // Closed for good (close(), or a final code): the wasm half has released everything.
        if (p.state === "closed") this.#host.free();
        break;
      case "error":
        if (p.code === "host_error") this.#cause = p.cause;
        this.#emit("error", p);
        break;
      default:
        this.#emit(kind, p);
    }
  }

  /** For tests: open [sockets, timers, listeners]. */
  _resources() { return this.#host.resources(); }
}

/** Opens a room; see index.d.ts for the options and events. */
export function connect(options) {
  return new Room(options);
}

export { RoomcastError };
