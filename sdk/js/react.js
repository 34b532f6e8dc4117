// React bindings: `import { useRoom, usePresence, useConnectionState } from "roomcast/react"`.
//
// One connection per room and options, whatever React does: StrictMode mounts every effect twice
// and hot reload re-runs them, so connections live in a registry with a reference count, and the
// last release closes the connection only after a microtask, by which time a re-mount has taken
// it again.
import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { connect } from "roomcast";

const registry = new Map(); // key -> { room, refs, token }

function keyOf({ token, ...rest }) {
  return JSON.stringify(Object.keys(rest).sort().map((k) => [k, rest[k]]));
}

function acquire(key, options, tokenRef) {
  let entry = registry.get(key);
  if (!entry) {
    // The token is read through a ref, so a new token function does not mean a new connection.
    const token = options.token === undefined ? undefined : () => {
      const t = tokenRef.current;
      return typeof t === "function" ? t() : t;
    };
    entry = { room: connect({ ...options, token }), refs: 0 };
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

/** The room for these options (null until mounted); closed when the last user unmounts. */
export function useRoom(options) {
  const key = keyOf(options);
  const tokenRef = useRef(options.token);
  tokenRef.current = options.token;
  const [room, setRoom] = useState(null);
  useEffect(() => {
    const r = acquire(key, options, tokenRef);
    setRoom(r);
    return () => release(key);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return room;
}

/** Subscribes to one of the room's events with a value derived from the room. */
function useRoomValue(room, event, read, initial) {
  const cache = useRef({ room: null, value: initial });
  const subscribe = useCallback((notify) => {
    if (!room) return () => {};
    return room.on(event, () => {
      cache.current = { room, value: read(room) };
      notify();
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [room, event]);
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
