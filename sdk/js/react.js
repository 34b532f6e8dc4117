// React bindings: `import { useRoom, usePresence, useConnectionState, useMessages, useClient, useUnread } from "roomcast/react"`.
//
// One connection per room and options, whatever React does: StrictMode mounts every effect twice
// and hot reload re-runs them, so connections live in a registry with a reference count, and the
// last release closes the connection only after a microtask, by which time a re-mount has taken
// it again.
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { connect, createClient } from "roomcast";
import { followMessages } from "roomcast/messages";

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
 * The room's messages (roomcast/messages' followMessages, kept current): the stored ones in seq
 * order, then this page's publishes not stored yet (`pending`, or `failed` with the `error`), each
 * replaced by its stored copy when the room acknowledges it. At most `max` (default 500).
 */
export function useMessages(room, { limit = 50, max = 500 } = {}) {
  const [view, setView] = useState(NO_MESSAGES);
  const feed = useRef(null);
  useEffect(() => {
    if (!room) {
      setView(NO_MESSAGES);
      return undefined;
    }
    const f = followMessages(room, { limit, max }, setView);
    feed.current = f;
    return () => {
      f.stop();
      if (feed.current === f) feed.current = null;
    };
  }, [room, limit, max]);
  const loadOlder = useCallback(() => feed.current?.loadOlder() ?? Promise.resolve(), []);
  return useMemo(() => ({ ...view, loadOlder }), [view, loadOlder]);
}
