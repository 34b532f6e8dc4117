// roomcast browser SDK: the public API (see README.md and index.d.ts) around the Rust/wasm core.
// The wasm is inlined by the build and instantiated on import, so a page needs no init call.
import { RoomcastError } from "./error.js";
import { EV_BROADCAST, EV_HISTORY, EV_PRESENCE, EV_PUBLISH, EV_SEND_TO } from "./events.js";
import { Host } from "./host.js";
import { isStr } from "./shapes.js";

const EVENTS = ["message", "presence", "status", "gap", "direct", "broadcast", "error", "read", "publish"];
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

/** The WebSocket URL of `path` (`/rooms/<room>/ws`, `/session/ws`) under the app's `url`. */
function endpoint(url, path) {
  const base = new URL(url, globalThis.location?.href);
  if (base.protocol === "http:") base.protocol = "ws:";
  if (base.protocol === "https:") base.protocol = "wss:";
  base.pathname = `${base.pathname.replace(/\/$/, "")}${path}`;
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
const isCount = (n) => Number.isSafeInteger(n) && n >= 0;
/** JSON text of an app's value (undefined is sent as null). */
const json = (v) => JSON.stringify(v ?? null);
/** An object literal (or Object.create(null)): no array, class instance, Date or Map. */
const isPlain = (v) => v !== null && typeof v === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(v));
/** A message frame (live, replayed or in a history answer) as the app sees it. */
const toMessage = (f) => {
  const m = { seq: f.seq, from: f.from, user: f.user, data: f.data, ts: f.ts };
  if (isStr(f.id)) m.id = f.id;
  return m;
};
const isMessage = (f) => isCount(f?.seq) && isStr(f.from) && isStr(f.user);

/** A token as the room takes it: a compact JWS (three base64url parts). */
const JWS = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/**
 * Calls the app's token function: `ok(token)`, or `failed(message, cause, away)` (`away`: its
 * server could not be reached, a failure that does not count) unless `live()` says the answer is
 * stale. What is not a token never goes to the room: its first bytes are in the message.
 */
function fetchToken(f, live, ok, failed) {
  Promise.resolve()
    .then(() => (isFn(f) ? f() : f))
    .then(
      (t) =>
        live()
        && (JWS.test(t)
          ? ok(t)
          : failed(
              isStr(t)
                ? `the token function resolved to ${JSON.stringify(t.slice(0, 40))}${t.length > 40 ? "…" : ""}, not a token (a compact JWS)`
                : `the token function resolved to ${t === null ? "null" : typeof t}, not a string`,
              t,
            )),
      (e) =>
        live()
        && failed(
          `the token function failed: ${e?.message ?? e}`,
          e,
          e instanceof TypeError && /fetch|network|load failed/i.test(e.message),
        ),
    );
}

/** The platform's clock, called the way the platform needs (unbound timers throw in browsers). */
const CLOCK = { now: () => Date.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };

/** A history answer as the app gets it (a malformed one rejects the call). */
function toPage({ _answer: f }) {
  if (!Array.isArray(f?.messages) || !f.messages.every(isMessage))
    throw new RoomcastError("bad_frame", "the room's history answer is malformed", { id: f?.id });
  return { messages: f.messages.map(toMessage), more: f.more === true };
}

class Room {
  #host;
  #handlers = new Map();
  /**
   * Every call the room answers (publish, sendTo, history, broadcast with ack, setPresence), by
   * the number the wasm half gave it: { resolve, reject, value, what, id: the id its frame
   * carries }. The wasm half settles each exactly once (acknowledged, refused, disconnected or
   * closed), through #settle.
   */
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
  /** Joined through a session (createClient): the user's read position here. */
  #readSeq = 0;
  /** The id the last call's frame carries. */
  #sent;

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
    const ep = endpoint(options.url, `/rooms/${options.room}/ws`);
    this.#token = options.token;
    this.#echo = !!options.echo;
    // One client id per connect() (per tab): the room filters echo by client id.
    this.clientId = options.clientId ?? randomId();
    const sink = options.logger ?? (options.debug ? (kind, detail) => console.debug(`roomcast ${options.room}:`, kind, detail) : undefined);
    // A logger that throws must not cost a frame: its error is rethrown on its own.
    const log =
      sink
      && ((kind, detail) => {
        try {
          sink(kind, detail);
        } catch (e) {
          queueMicrotask(() => {
            throw e;
          });
        }
      });
    this.#log = log;
    this.#host = new Host(this, {
      ...options,
      WebSocket,
      // what crosses the socket is logged by the host (connects, frames, closes)
      _log: log,
      clock,
      clientId: this.clientId,
      endpoint: ep,
    });
    // Start once the caller has had the chance to attach handlers (or at its first publish).
    queueMicrotask(() => this.#start());
  }

  #start() {
    if (!this.#closed) this.#host._start();
  }

  /** close() was called (perhaps before the connection started, when the host never ran). */
  #closed = false;

  get state() {
    return this.#closed ? "closed" : this.#host._state;
  }
  get lastSeq() {
    return this.#host._lastSeq();
  }
  /** The room's limits from the last welcome (the server's defaults before one came). */
  get limits() {
    return { ...DEFAULT_LIMITS, ...this.#limits };
  }

  on(event, handler) {
    if (!EVENTS.includes(event)) throw new TypeError(`roomcast: unknown event ${event}`);
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.#handlers.get(event)?.delete(handler);
  }

  publish(data) {
    // A publish right after connect() is queued like any other made while not yet open.
    this.#start();
    const result = this.#request(EV_PUBLISH, [json(data)], (s) => s.seq);
    // (for lists that show it at once: roomcast/messages)
    this.#emit("publish", { id: this.#sent, data, result });
    return result;
  }

  // (`input` 1: a shared terminal's input frame instead of a direct message; see sendInput)
  sendTo(target, data, input) {
    const to = target?.user !== undefined ? { user: String(target.user) } : { clientId: String(target?.clientId) };
    return this.#request(EV_SEND_TO, [JSON.stringify(to), json(data), input]);
  }

  /**
   * Input for a shared terminal (`roomcast terminal`): `{ keys }` or `{ resize: [rows, cols] }` to
   * its agent's client id. The room takes it only from a token with the `input` right.
   */
  sendInput(target, data) {
    return this.sendTo(target, data, 1);
  }

  /**
   * A page of stored messages over the socket (not queued: rejects `offline` when not open,
   * `disconnected` when the socket goes before the answer).
   */
  history({ limit, before, since } = {}) {
    const page = { limit, before, since };
    for (const [k, v] of Object.entries(page)) {
      if (v !== undefined && !isCount(v))
        return Promise.reject(new TypeError(`roomcast: history ${k} must be a whole number, not ${quote(v)}`));
    }
    if (before !== undefined && since !== undefined)
      return Promise.reject(new TypeError("roomcast: history takes before or since, not both"));
    // (an absent bound crosses the wasm boundary as NaN: see Host.request)
    return this.#request(EV_HISTORY, [undefined, undefined, limit, before, since], toPage, "history");
  }

  /**
   * An ephemeral message to the room's other members: not stored, not queued. Resolves once sent
   * (refusals come as `error` events), or with `{ ack: true }` once the room answered.
   */
  broadcast(data, { ack = false } = {}) {
    return this.#request(EV_BROADCAST, [json(data), undefined, +!!ack], undefined, "broadcast");
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
    this.#start();
    return this.#request(EV_PRESENCE, [text], undefined, "presence meta");
  }

  members() {
    return Array.from(this.#members.values());
  }

  /**
   * A room joined through createClient(): the user has read it up to `seq`. Every device of the
   * user learns it (a `read` event) and `unread` follows. Sent while joined; never moves back.
   */
  markRead(seq) {
    if (!this._session) throw new TypeError("roomcast: markRead() is for rooms joined with createClient().join()");
    if (!isCount(seq)) throw new TypeError(`roomcast: markRead takes a seq, not ${quote(seq)}`);
    this.#host._markRead(seq);
  }

  /** A room joined through createClient(): the messages after the user's read position. */
  get unread() {
    return Math.max(0, this.lastSeq - this.#readSeq);
  }

  /** The user's read position in this room (0 before any). */
  get readSeq() {
    return this.#readSeq;
  }

  /**
   * Reconnects now if waiting out a backoff, or checks the open connection with a ping (a room
   * joined through createClient(): its client's socket).
   */
  reconnect() {
    if (this._session) this._session.reconnect();
    else this.#host._wake();
  }

  /** Leaves a room joined through createClient() (the same as close()). */
  leave() {
    this.close();
  }

  /** The session's read position for this room moved (or a joined frame said it). */
  _read(seq) {
    if (seq > this.#readSeq) {
      this.#readSeq = seq;
      this.#emit("read", { seq, unread: this.unread });
    }
  }

  close() {
    this.#closed = true;
    this.#host._close();
    // (the wasm half rejected what it held; before the connection started it held nothing)
    for (const id of this.#pending.keys()) this.#settle({ id, code: "closed" });
  }

  /**
   * A call on the wasm half, which builds and sends its frame and settles it later (#settle).
   * `value` makes the resolution from the settlement; `what` names the call in its errors.
   */
  #request(ev, args, value = () => {}, what = "message") {
    return new Promise((resolve, reject) => {
      const [n, failure, given] = this.#closed ? [0, "closed"] : this.#host._request(ev, ...args);
      this.#sent = n ? given : undefined;
      if (failure) reject(this.#error(failure, undefined, undefined, what, given));
      else if (n) this.#pending.set(n, { _resolve: resolve, _reject: reject, _value: value, _what: what, _id: given });
      else resolve(); // a broadcast nobody answers: handed to the socket
    });
  }

  /** The one settle path: the wasm half's answer to call number `id` (`code`: why it failed). */
  #settle({ id, code, _answer: answer, ...rest }) {
    const call = this.#pending.get(id);
    const message = answer?.code === code ? answer.message : undefined;
    if (!call) {
      // a refusal no call waits for (an error frame naming an unknown id, or the presence meta
      // sent again after a reconnect), under the id the frame named
      if (code) this.#emit("error", { code, message, id: answer?.id, retryAfterMs: answer?.retryAfterMs });
      return;
    }
    this.#pending.delete(id);
    if (code) return call._reject(this.#error(code, message, call._id, call._what, undefined, answer?.retryAfterMs));
    try {
      call._resolve(call._value({ _answer: answer, ...rest }));
    } catch (e) {
      call._reject(e);
    }
  }

  /**
   * The rejection for `code`, with what the SDK knows about it (`given`: "<size> <limit>" of what
   * the wasm half refused as too large).
   */
  #error(code, message, id, what, given, retryAfterMs) {
    const c = this.#closedBy;
    if (code === "too_large" && !message) {
      const [size, max = this.#limits.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes] = given?.split(" ") ?? [];
      message =
        what === "message"
          ? `the message is larger than the room's frame limit (${max} bytes); it was not sent`
          : `the ${what} is ${size} bytes, over the room's limit (${max} bytes); it was not sent`;
    }
    if (code === "disconnected" && what === "history") message = "the connection dropped before the room answered";
    if (code !== "closed" || !c) return new RoomcastError(code, message || TEXT[code], { id, retryAfterMs });
    return new RoomcastError(code, `the room is closed: ${c.reason}`, {
      closeCode: c.code,
      cause: c.code === 4000 ? this.#cause : undefined,
      id,
    });
  }

  #emit(event, payload) {
    for (const h of this.#handlers.get(event) ?? []) {
      try {
        h(payload);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  /** The wasm half needs a token (to connect, or to refresh the open connection's). */
  #fetchToken() {
    const n = ++this.#fetches;
    fetchToken(
      this.#token,
      () => n === this.#fetches,
      (t) => this.#host._setToken(t),
      // reported with the app's error, and counted by the wasm half (unless unreachable)
      (message, cause, away) => {
        this.#cause = cause;
        this.#emit("error", { code: "token_failed", message, cause });
        this.#host._setToken(undefined, away);
      },
    );
  }

  /** A welcome: the room's limits, and the member list (a reconnect may have missed changes). */
  #welcomed(p) {
    // the user this connection is (the token's), for the stored copies of its own publishes
    this.user = p.user;
    if (isCount(p.read)) this._read(p.read);
    if (p.limits && typeof p.limits === "object") this.#limits = p.limits;
    const before = this.#members;
    this.#members = new Map(p.members.map((m) => [m.user, m]));
    const joined = p.members.filter((m) => !before.has(m.user));
    const left = [...before.keys()].filter((u) => !this.#members.has(u));
    // (after a reconnect: members whose count or meta changed meanwhile)
    const updated = p.members.filter((m) => before.has(m.user) && JSON.stringify(before.get(m.user)) !== JSON.stringify(m));
    this.#emit("presence", { members: this.members(), joined, left, updated });
  }

  /** A member joined, changed or left. */
  #presenceChanged({ event, member: m }) {
    const leave = event === "leave";
    const isNew = !this.#members.has(m.user);
    if (leave) this.#members.delete(m.user);
    else this.#members.set(m.user, m);
    this.#emit("presence", {
      members: this.members(),
      joined: !leave && isNew ? [m] : [],
      left: leave ? [m.user] : [],
      updated: !leave && !isNew ? [m] : [],
    });
  }

  #statusChanged(p) {
    this.#log?.("status", p);
    if (p.state === "open") this.#cause = undefined;
    if (p.state === "closed") this.#closedBy = p;
    this.#emit("status", p);
    // Closed for good (close(), or a final code): the wasm half has released everything, and the
    // rejections it made follow this event.
    if (p.state === "closed") this.#host._free();
  }

  /** What each event from the host does (see host.js); anything else goes to the app as it is. */
  static #on = {
    message: (r, p) => r.#emit("message", toMessage(p)),
    // echo as for messages: never this client id's own unless asked for
    broadcast: (r, p) => (r.#echo || p.from !== r.clientId) && r.#emit("broadcast", { from: p.from, user: p.user, data: p.data, ts: p.ts }),
    direct: (r, p) => r.#emit("direct", { from: p.from, user: p.user, data: p.data, ts: p.ts }),
    welcome: (r, p) => r.#welcomed(p),
    presence: (r, p) => r.#presenceChanged(p),
    settled: (r, p) => r.#settle(p),
    token: (r) => r.#fetchToken(),
    status: (r, p) => r.#statusChanged(p),
    error: (r, p) => {
      if (p.code === "host_error") r.#cause = p.cause;
      r.#emit("error", p);
    },
  };

  /** Events from the host (see host.js); not part of the API. */
  _dispatch(kind, p) {
    (Room.#on[kind] ?? ((r) => r.#emit(kind, p)))(this, p);
  }

  /** For tests: open [sockets, timers, listeners]. */
  _resources() {
    return this.#host._resources();
  }
}

/** Opens a room; see index.d.ts for the options and events. */
export function connect(options) {
  return new Room(options);
}

const CLIENT_EVENTS = ["status", "error", "watch", "read"];

/**
 * One socket for any number of rooms (docs/PROTOCOL.md, Sessions): one backoff, one heartbeat,
 * one token refresh; after a reconnect every joined room resumes at once. Each joined room is a
 * Room with the interface of connect()'s (its own client machine, relayed over this socket).
 */
class Client {
  #host;
  #handlers = new Map();
  #options;
  #rooms = new Map();
  /** The rooms watched (sent again on every connection), their heads, the user's read positions. */
  #watched = [];
  #heads = new Map();
  #reads = new Map();
  #fetches = 0;

  constructor(options) {
    if (!options?.url) throw new TypeError("roomcast: createClient() needs url");
    if (!isStr(options.token) && !isFn(options.token))
      throw new TypeError("roomcast: createClient() needs a token (a string or a function)");
    if (options.clientId !== undefined && !CLIENT_ID.test(options.clientId)) {
      throw new TypeError(`roomcast: invalid clientId ${quote(options.clientId)}: 1-64 characters of A-Z a-z 0-9 _ -`);
    }
    const WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!isFn(WebSocket)) throw new TypeError("roomcast: no WebSocket here: pass one as the WebSocket option");
    const clock = options.clock ?? CLOCK;
    this.clientId = options.clientId ?? randomId();
    this.#options = { ...options, WebSocket, clock, clientId: this.clientId };
    this.#host = new Host(this, { ...this.#options, endpoint: endpoint(options.url, "/session/ws"), _session: true });
    queueMicrotask(() => this.#host._start());
  }

  get status() {
    return this.#host._state;
  }

  on(event, handler) {
    if (!CLIENT_EVENTS.includes(event)) throw new TypeError(`roomcast: unknown event ${event}`);
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.#handlers.get(event)?.delete(handler);
  }

  /**
   * Joins `room` over this client's socket: a Room with the same interface and events as
   * connect()'s, plus leave(), markRead(seq) and unread. Joining a room already joined returns it.
   */
  join(room, options = {}) {
    const open = this.#rooms.get(room);
    if (open && open.state !== "closed") return open;
    const { token, ...own } = this.#options;
    const r = new Room({ ...own, ...options, room, clientId: this.clientId, _link: this.#host });
    r._session = this;
    this.#rooms.set(room, r);
    if (this.#reads.has(room)) r._read(this.#reads.get(room));
    return r;
  }

  /** The rooms to show without joining them (a sidebar): their seq and unread count follow. */
  watch(rooms) {
    if (!Array.isArray(rooms) || !rooms.every((r) => isStr(r) && ROOM_NAME.test(r))) {
      throw new TypeError("roomcast: watch() takes an array of room names");
    }
    this.#watched = [...rooms];
    this.#host._watch(this.#watched);
  }

  /** The rooms joined or watched, with their latest seq, the user's read position and unread count. */
  rooms() {
    const list = new Map();
    for (const [room, seq] of this.#heads) list.set(room, seq);
    for (const [room, r] of this.#rooms) if (r.state !== "closed") list.set(room, r.lastSeq);
    return [...list].map(([room, seq]) => {
      const readSeq = this.#reads.get(room) ?? 0;
      return { room, seq, readSeq, unread: Math.max(0, seq - readSeq) };
    });
  }

  /** Reconnects now if waiting (after an outage the app noticed), or checks the link at once. */
  reconnect() {
    this.#host._wake();
  }

  close() {
    for (const r of this.#rooms.values()) r.close();
    this.#host._close();
  }

  #emit(event, payload) {
    for (const h of this.#handlers.get(event) ?? []) {
      try {
        h(payload);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  #fetchToken() {
    const n = ++this.#fetches;
    fetchToken(
      this.#options.token,
      () => n === this.#fetches,
      (t) => this.#host._setToken(t),
      (message, cause, away) => {
        this.#emit("error", { code: "token_failed", message, cause });
        this.#host._setToken(undefined, away);
      },
    );
  }

  /** Events from the host (see host.js); not part of the API. */
  _dispatch(kind, p) {
    if (kind === "token") return this.#fetchToken();
    if (kind === "status") {
      this.#emit("status", p);
      if (p.state === "open" && this.#watched.length) this.#host._watch(this.#watched);
      if (p.state === "closed") this.#host._free();
    } else if (kind === "watch") {
      this.#heads.set(p.room, p.seq);
      this.#emit("watch", { room: p.room, seq: p.seq, unread: p.unread });
    } else if (kind === "read_position") {
      this.#reads.set(p.room, p.seq);
      this.#rooms.get(p.room)?._read(p.seq);
      this.#emit("read", { room: p.room, seq: p.seq });
    } else if (kind === "error") this.#emit("error", p);
  }
}

/** One socket for any number of rooms; see index.d.ts. */
export function createClient(options) {
  return new Client(options);
}

export { RoomcastError };
