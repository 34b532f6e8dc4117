// React bindings: `import { useRoom, usePresence, useConnectionState, useMessages, useClient, useUnread } from "roomcast/react"`.
//
// One connection per room and options, whatever React does: StrictMode mounts every effect twice
// and hot reload re-runs them, so connections live in a registry with a reference count, and the
// last release closes the connection only after a microtask, by which time a re-mount has taken
// it again.
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { connect, createClient } from "roomcast";

const registry = new Map(); // key -> { room, refs, token }

function keyOf({ token, ...rest }) {
  return JSON.stringify(
    Object.keys(rest)
      .sort()
      .map((k) => [k, rest[k]]),
  );
}

function acquire(key, options, tokenRef, open = connect) {
  let entry = registry.get(key);
  if (!entry) {
    // The token is read through a ref, so a new token function does not mean a new connection.
    const token =
      options.token === undefined
        ? undefined
        : () => {
            const t = tokenRef.current;
            return typeof t === "function" ? t() : t;
          };
    entry = { room: open({ ...options, token }), refs: 0 };
    registry.set(key, entry);
  }
  entry.refs++;
  return entry.room;
}

function release(key) {
  const entry = registry.get(key);
  if (!entry) return;
  entry.refs--;
  queueMicrotask(() => {
    if (entry.refs === 0 && registry.get(key) === entry) {
      registry.delete(key);
      entry.room.close();
    }
  });
}

/**
 * The room for these options (null until mounted); closed when the last user unmounts. With a
 * client (`useRoom(client, "chat:general", { rewind })`): that room joined over the client's
 * socket, left when the last user unmounts.
 */
export function useRoom(options, name, joinOptions) {
  const client = typeof options?.join === "function" ? options : null;
  // useRoom(client, name) before useClient() mounted its client: no room yet
  const waiting = !client && name !== undefined;
  const key = waiting ? "" : client ? `${client.clientId} ${name} ${JSON.stringify(joinOptions ?? {})}` : keyOf(options);
  const tokenRef = useRef(options?.token);
  tokenRef.current = options?.token;
  const [room, setRoom] = useState(null);
  useEffect(() => {
    if (waiting) {
      setRoom(null);
      return;
    }
    if (!client) {
      const r = acquire(key, options, tokenRef);
      setRoom(r);
      return () => release(key);
    }
    const r = acquire(key, joinOptions ?? {}, tokenRef, (o) => client.join(name, o));
    setRoom(r);
    return () => release(key);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, client]);
  return room;
}

/**
 * One socket for many rooms (createClient) for these options (null until mounted), shared by the
 * components that ask for the same options; closed when the last one unmounts.
 */
export function useClient(options) {
  const key = `client ${keyOf(options)}`;
  const tokenRef = useRef(options.token);
  tokenRef.current = options.token;
  const [client, setClient] = useState(null);
  useEffect(() => {
    const c = acquire(key, options, tokenRef, createClient);
    setClient(c);
    return () => release(key);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return client;
}

/** A room joined over a client: its unread count, kept current (messages and read positions). */
export function useUnread(room) {
  const [, rerender] = useState(0);
  useEffect(() => {
    if (!room) return;
    // a new message, or a read position from any of the user's devices
    const bump = () => rerender((n) => n + 1);
    const offs = [room.on("message", bump), room.on("read", bump)];
    return () => {
      for (const off of offs) off();
    };
  }, [room]);
  return room ? room.unread : 0;
}

/** Subscribes to one of the room's events with a value derived from the room. */
function useRoomValue(room, event, read, initial) {
  const cache = useRef({ room: null, value: initial });
  const subscribe = useCallback(
    (notify) => {
      if (!room) return () => {};
      return room.on(event, () => {
        cache.current = { room, value: read(room) };
        notify();
      });
      // eslint-disable-next-line react-hooks/exhaustive-deps
    },
    [room, event],
  );
  const snapshot = () => {
    if (room && cache.current.room !== room) cache.current = { room, value: read(room) };
    return room ? cache.current.value : initial;
  };
  return useSyncExternalStore(subscribe, snapshot, () => initial);
}

/** The member list, kept current. */
export function usePresence(room) {
  return useRoomValue(room, "presence", (r) => r.members(), EMPTY);
}

/** "connecting" | "open" | "reconnecting" | "closed", kept current. */
export function useConnectionState(room) {
  return useRoomValue(room, "status", (r) => r.state, "connecting");
}

const EMPTY = Object.freeze([]);

const NO_MESSAGES = Object.freeze({ messages: EMPTY, more: false, loading: false, error: undefined });

/**
 * The room's messages, each seq once, in seq order: the latest `limit` stored ones (read when the
 * room is open, again after a reconnect if that read failed), then the live ones as they arrive
 * (a live message the page also holds is dropped by its seq). `loadOlder()` prepends the page
 * before the oldest held; it resolves when done (a failure is in `error`). After a `gap` the list
 * starts over from the latest page, so it never shows messages on both sides of a hole.
 */
export function useMessages(room, { limit = 50 } = {}) {
  const [view, setView] = useState(NO_MESSAGES);
  const feed = useRef(null);
  useEffect(() => {
    if (!room) {
      setView(NO_MESSAGES);
      return undefined;
    }
    const f = follow(room, limit, setView);
    feed.current = f;
    return () => {
      f.stop();
      if (feed.current === f) feed.current = null;
    };
  }, [room, limit]);
  const loadOlder = useCallback(() => feed.current?.loadOlder() ?? Promise.resolve(), []);
  return useMemo(() => ({ ...view, loadOlder }), [view, loadOlder]);
}

/** Keeps `show` told of the room's messages (see useMessages) until `stop()`. */
function follow(room, limit, show) {
  let view = { ...NO_MESSAGES, loading: true };
  let seqs = new Set();
  /** Bumped by a gap: answers to reads made before it are dropped. */
  let generation = 0;
  let latest = null;
  let older = null;
  let loaded = false;
  let stopped = false;
  const set = (patch) => {
    view = { ...view, ...patch };
    if (!stopped) show(view);
  };
  const add = (list) => {
    const fresh = list.filter((m) => !seqs.has(m.seq));
    if (!fresh.length) return;
    for (const m of fresh) seqs.add(m.seq);
    const last = view.messages.at(-1)?.seq ?? -1;
    const messages = fresh.every((m, i) => m.seq > (i ? fresh[i - 1].seq : last))
      ? [...view.messages, ...fresh]
      : [...view.messages, ...fresh].sort((a, b) => a.seq - b.seq);
    set({ messages });
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
  const offs = [
    room.on("message", (m) => add([m])),
    room.on("status", (s) => {
      if (s.state === "open" && !loaded) loadLatest();
    }),
    room.on("gap", () => {
      generation++;
      seqs = new Set();
      latest = older = null;
      loaded = false;
      set({ messages: EMPTY, more: false });
      // the gap comes with the welcome: the room is open (or about to be, and the status loads)
      if (room.state === "open") loadLatest();
    }),
  ];
  if (room.state === "open") loadLatest();
  else set({});
  return {
    loadOlder() {
      if (older) return older;
      const oldest = view.messages[0]?.seq;
      if (!loaded || !view.more || oldest === undefined) return Promise.resolve();
      const p = read({ before: oldest }, ({ messages, more }) => {
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
