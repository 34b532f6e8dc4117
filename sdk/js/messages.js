// roomcast/messages: a room's message list for a page, without React (roomcast/react's useMessages
// is this with a hook around it). Kept out of the package file a page loads by `import "roomcast"`.

const EMPTY = Object.freeze([]);

/**
 * Keeps `show(view)` told of the room's messages until `stop()`. `view.messages` is the stored
 * messages, each seq once, in seq order (the latest `limit` read when the room is open, again
 * after a reconnect if that read failed, then the live ones; `loadOlder()` prepends the page
 * before the oldest held), then this page's own publishes not stored yet: `pending: true` from the
 * moment `publish()` is called (offline too), `failed: true` with the `error` when refused; each
 * is replaced by its stored copy (matched by the message id the SDK sends) when the room
 * acknowledges it, so it never shows twice. At most `max` messages are held: the oldest stored
 * ones go first (`more` turns true); `loadOlder()` widens the window by the page it read. After a `gap` the stored list starts over from the latest
 * page, so it never shows messages on both sides of a hole.
 */
export function followMessages(room, { limit = 50, max = 500 } = {}, show = () => {}) {
  let view = { messages: EMPTY, more: false, loading: true, error: undefined };
  /** Stored messages in seq order, and this page's publishes not stored yet. */
  let stored = [];
  let outbox = [];
  let seqs = new Set();
  /** Bumped by a gap: answers to reads made before it are dropped. */
  let generation = 0;
  let latest = null;
  let older = null;
  let loaded = false;
  let stopped = false;
  /** The window: `max`, widened by what loadOlder() read. */
  let cap = max;
  const set = (patch) => {
    const over = stored.length + outbox.length - cap;
    if (over > 0) {
      for (const m of stored.splice(0, over)) seqs.delete(m.seq);
      patch.more = true;
    }
    view = { ...view, ...patch, messages: stored.length + outbox.length ? [...stored, ...outbox] : EMPTY };
    if (!stopped) show(view);
  };
  const add = (list) => {
    const fresh = list.filter((m) => !seqs.has(m.seq));
    // a stored copy of one of this page's publishes takes its place
    const ids = new Set(list.map((m) => m.id).filter(Boolean));
    const before = outbox.length;
    outbox = outbox.filter((m) => !ids.has(m.id));
    if (!fresh.length && outbox.length === before) return;
    for (const m of fresh) seqs.add(m.seq);
    const last = stored.at(-1)?.seq ?? -1;
    stored = fresh.every((m, i) => m.seq > (i ? fresh[i - 1].seq : last))
      ? [...stored, ...fresh]
      : [...stored, ...fresh].sort((a, b) => a.seq - b.seq);
    set({});
  };
  /** A read; its answer counts only if no gap came in between. */
  const read = (page, done) => {
    const g = generation;
    set({ loading: true });
    return room.history({ limit, ...page }).then(
      (answer) => {
        if (g === generation && !stopped) done(answer);
      },
      (error) => {
        if (g === generation && !stopped) set({ loading: false, error });
      },
    );
  };
  const loadLatest = () => {
    if (latest || stopped) return;
    const p = read({}, ({ messages, more }) => {
      loaded = true;
      add(messages);
      // `more`: whether messages older than the page exist (loadOlder reads before the oldest held)
      set({ more, loading: false, error: undefined });
    }).finally(() => {
      if (latest === p) latest = null;
    });
    latest = p;
  };
  /** One of this page's publishes: pending now, then stored (or failed). */
  const sent = ({ id, data, result }) => {
    const mine = { id, from: room.clientId, user: room.user, data, ts: Date.now(), pending: true };
    outbox = [...outbox, mine];
    set({});
    result.then(
      (seq) => {
        // the stored copy: as the room has it (its ts is the ack's arrival here)
        if (seqs.has(seq)) add([{ id, seq }]);
        else {
          outbox = outbox.filter((m) => m !== mine);
          add([{ seq, id, from: mine.from, user: room.user, data, ts: Date.now() }]);
        }
      },
      (error) => {
        outbox = outbox.map((m) => (m === mine ? { ...mine, pending: false, failed: true, error } : m));
        set({});
      },
    );
  };
  const offs = [
    room.on("message", (m) => add([m])),
    room.on("publish", sent),
    room.on("status", (s) => {
      if (s.state === "open" && !loaded) loadLatest();
    }),
    room.on("gap", () => {
      generation++;
      seqs = new Set();
      stored = [];
      latest = older = null;
      loaded = false;
      set({ more: false });
      // the gap comes with the welcome: the room is open (or about to be, and the status loads)
      if (room.state === "open") loadLatest();
    }),
  ];
  if (room.state === "open") loadLatest();
  else set({});
  return {
    get view() {
      return view;
    },
    loadOlder() {
      if (older) return older;
      const oldest = stored[0]?.seq;
      if (!loaded || !view.more || oldest === undefined) return Promise.resolve();
      const p = read({ before: oldest }, ({ messages, more }) => {
        cap = Math.max(cap, stored.length + outbox.length + messages.length);
        add(messages);
        set({ more, loading: false, error: undefined });
      }).finally(() => {
        if (older === p) older = null;
      });
      older = p;
      return p;
    },
    stop() {
      stopped = true;
      for (const off of offs) off();
    },
  };
}
