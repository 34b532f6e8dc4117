// Test doubles for the SDK's injectable dependencies: a WebSocket the test drives by hand and a
// clock whose time moves only when the test says so. With them the built package (sdk/dist) runs
// in plain Node, deterministically, with no server and no browser.

/** Lets pending promise callbacks (token functions, queued starts) run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A clock for the `clock` option: `advance(ms)` fires what falls due, in order. */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
  }

  now() {
    return this.t;
  }

  setTimeout(f, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), f });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** When the next timer is due (undefined: none). */
  next() {
    let at;
    for (const t of this.timers.values()) if (at === undefined || t.at < at) at = t.at;
    return at;
  }

  /** Moves time on by `ms`, firing each timer due by then at its time. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let due;
      for (const [id, t] of this.timers) if (t.at <= end && (!due || t.at < due[1].at)) due = [id, t];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].f();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

/**
 * A fake WebSocket class for the `WebSocket` option. Each class made by `fakeSockets()` records
 * its instances; a test plays the server: `open()`, `receive(...frames)`, `serverClose(code, reason)`.
 */
export function fakeSockets() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = new URL(url);
      this.protocols = protocols;
      this.sent = [];
      this.readyState = 0;
      this.closedWith = null;
      sockets.push(this);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error(`send() while readyState is ${this.readyState}`);
      this.sent.push(text);
    }

    close(code, reason) {
      this.readyState = 3;
      this.closedWith = { code, reason };
    }

    // ---- the server's side ----

    open() {
      this.readyState = 1;
    }

    /** One WebSocket message: the frames (objects, or raw lines) joined by line feeds. */
    receive(...frames) {
      this.onmessage?.({ data: frames.map((f) => (typeof f === "string" ? f : JSON.stringify(f))).join("\n") });
    }

    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    /** What the client sent, parsed. */
    get frames() {
      return this.sent.map((t) => JSON.parse(t));
    }

    get bearer() {
      return this.protocols.find((p) => p.startsWith("bearer."))?.slice(7);
    }
  }
  return { FakeSocket, sockets, last: () => sockets.at(-1) };
}

export const welcome = (seq = 0, more = {}) => ({
  type: "welcome",
  epoch: "e1",
  seq,
  clientId: "me",
  user: "u-me",
  members: [],
  heartbeat: { interval: 20_000, timeout: 60_000 },
  limits: {
    maxFrameBytes: 65_536,
    messagesPerSec: 50,
    messagesBurst: 100,
    bytesPerSec: 262_144,
    messageIdMax: 128,
    presenceMetaMax: 2_048,
  },
  ...more,
});

export const message = (seq, from = "other", data = { n: seq }) => ({
  type: "message",
  seq,
  from,
  user: `u-${from}`,
  id: `m${seq}`,
  data,
  ts: 1,
});
