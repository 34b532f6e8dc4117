// roomcast browser SDK: the public API (see README.md and index.d.ts) around the Rust/wasm core.
// The wasm is inlined by the build and instantiated on import, so a page needs no init call.
import { Host } from "./host.js";

const EVENTS = ["message", "presence", "status", "gap", "direct", "error"];
// What the wasm side returns instead of an id when a message cannot be sent.
const FAILURES = { 1: ["queue_full", "the offline queue is full"], 2: ["closed", "the room is closed"], 3: ["offline", "not connected"] };

class RoomcastError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "RoomcastError";
    this.code = code;
  }
}

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

class Room {
  #host;
  #handlers = new Map();
  #pending = new Map();
  #members = new Map();
  #token;

  constructor(options) {
    if (!options?.url || !options?.room) throw new TypeError("roomcast: connect() needs url and room");
    this.#token = options.token;
    this.clientId = options.clientId ?? randomId();
    this.#host = new Host(this, { ...options, clientId: this.clientId, endpoint: endpoint(options.url, options.room) });
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
      const id = send();
      if (typeof id === "string") {
        this.#pending.set(id, { resolve: (ack) => resolve(value(ack)), reject });
        return;
      }
      const [code, message] = FAILURES[id] ?? ["closed", "the room is closed"];
      reject(new RoomcastError(code, message));
    });
  }

  #emit(event, payload) {
    for (const h of this.#handlers.get(event) ?? []) {
      try { h(payload); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }

  /** Events from the host (see host.js); not part of the API. */
  _dispatch(kind, p) {
    switch (kind) {
      case "message":
        this.#emit("message", { seq: p.seq, from: p.from, user: p.user, data: p.data, ts: p.ts });
        break;
      case "welcome": {
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
          if (kind === "reject") this.#emit("error", { code: p.code, id: p.id });
          break;
        }
        this.#pending.delete(p.id);
        if (kind === "ack") pending.resolve(p);
        else pending.reject(new RoomcastError(p.code));
        break;
      }
      case "token":
        Promise.resolve()
          .then(() => (typeof this.#token === "function" ? this.#token() : this.#token))
          .then((t) => this.#host.setToken(typeof t === "string" ? t : undefined), () => this.#host.setToken(undefined));
        break;
      case "direct":
        this.#emit("direct", { from: p.from, user: p.user, data: p.data, ts: p.ts });
        break;
      case "status":
        this.#emit("status", p);
        // Closed for good (close(), or a final code): the wasm half has released everything.
        if (p.state === "closed") this.#host.free();
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
