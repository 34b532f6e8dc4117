// roomcast browser SDK: the public API (see README.md and index.d.ts) around the Rust/wasm core.
// The wasm is inlined by the build and instantiated on import, so a page needs no init call.
import { Host } from "./host.js";

const EVENTS = ["message", "presence", "status", "gap", "direct", "error"];
/** Room names as the server takes them (protocol::name::validate_room). */
const ROOM_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Client ids as the server takes them (protocol::name::validate_client_id). */
const CLIENT_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The frame limit until a welcome states the room's (protocol::client::DEFAULT_MAX_FRAME_BYTES). */
const DEFAULT_MAX_FRAME_BYTES = 65536;
/** What a rejection says when the server said nothing. */
const TEXT = {
  queue_full: "the offline queue is full",
  closed: "the room is closed",
  offline: "not connected (direct messages are not queued)",
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
  #maxFrame = DEFAULT_MAX_FRAME_BYTES;

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
    const ep = endpoint(options.url, options.room);
    this.#token = options.token;
    // One client id per connect() (per tab): the room filters echo by client id.
    this.clientId = options.clientId ?? randomId();
    this.#host = new Host(this, { ...options, WebSocket, clock, clientId: this.clientId, endpoint: ep });
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

  members() { return Array.from(this.#members.values()); }

  close() {
    this.#closed = true;
    this.#host.close();
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
    if (code === "too_large") message ??= `the message is larger than the room's frame limit (${this.#maxFrame} bytes); it was not sent`;
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
        this.#emit("message", { seq: p.seq, from: p.from, user: p.user, data: p.data, ts: p.ts });
        break;
      case "welcome": {
        this.#maxFrame = p.limits?.maxFrameBytes ?? this.#maxFrame;
        const before = new Set(this.#members.keys());
        this.#members = new Map(p.members.map((m) => [m.user, m]));
        const joined = p.members.filter((m) => !before.has(m.user));
        const left = [...before].filter((u) => !this.#members.has(u));
        this.#emit("presence", { members: this.members(), joined, left });
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
        });
        break;
      }
      case "ack": case "reject": {
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
        if (p.state === "open") this.#cause = undefined;
        if (p.state === "closed") this.#closedBy = p;
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
