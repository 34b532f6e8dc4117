import type { Client, ClientOptions, ConnectOptions, JoinOptions, Member, Message, Room, State } from "roomcast";

/**
 * The room for these options (null until mounted). One connection per room and options, also
 * under StrictMode and hot reload; closed when the last component using it unmounts. Typed like
 * `connect<TData, TMeta, TBroadcast>()`.
 */
export declare function useRoom<TData = unknown, TMeta extends object = Record<string, unknown>, TBroadcast = TData>(
  options: ConnectOptions,
): Room<TData, TMeta, TBroadcast> | null;
/**
 * A room joined over a client's socket (null until mounted), left when the last component using it
 * unmounts. Typed like `client.join<TData, TMeta, TBroadcast>()`.
 */
export declare function useRoom<TData = unknown, TMeta extends object = Record<string, unknown>, TBroadcast = TData>(
  client: Client | null,
  room: string,
  options?: JoinOptions,
): Room<TData, TMeta, TBroadcast> | null;
/** One socket for many rooms (createClient) for these options (null until mounted), shared and closed with its last user. */
export declare function useClient(options: ClientOptions): Client | null;
/** A joined room's unread count (messages after the user's read position), re-rendering as it moves. */
export declare function useUnread(room: Room<any, any, any> | null): number;
/** The member list, re-rendering on presence changes (joins, leaves, `setPresence()` anywhere). */
export declare function usePresence<TMeta extends object = Record<string, unknown>>(
  room: Room<any, TMeta, any> | null,
): readonly Member<TMeta>[];
/** The connection state, re-rendering on changes. */
export declare function useConnectionState(room: Room<any, any, any> | null): State;

export interface MessagesOptions {
  /** Messages per page: the latest page on open, and each `loadOlder()` (default 50). */
  limit?: number;
}

export interface MessagesState<TData = unknown> {
  /** Each seq once, in seq order: the pages read and the live messages since. */
  messages: readonly Message<TData>[];
  /** Whether older messages exist than the oldest held (`loadOlder()` reads them). */
  more: boolean;
  /** A page is being read (or the room is not open yet and the first page waits for it). */
  loading: boolean;
  /** Why the last read failed (RoomcastError); cleared by the next one that succeeds. */
  error: unknown;
  /**
   * Reads the page before the oldest message held and prepends it. Resolves when done (at once
   * when there is nothing older or a read is running); a failure is in `error`, not a rejection.
   */
  loadOlder(): Promise<void>;
}

/**
 * The room's messages for a list: the latest `limit` stored ones, read when the room is open, then
 * live ones appended as they arrive, each seq once (duplicates dropped by seq); `loadOlder()`
 * pages back. After a `gap` it starts over from the latest page. With echo off your own messages
 * come only from pages, not live: connect with `echo: true` for a chat.
 */
export declare function useMessages<TData = unknown>(room: Room<TData, any, any> | null, options?: MessagesOptions): MessagesState<TData>;
