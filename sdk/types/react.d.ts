import type { Client, ClientOptions, ConnectOptions, JoinOptions, Member, Room, State } from "roomcast";
import type { MessagesOptions, MessagesView } from "./messages";

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

export type { ListedMessage, MessagesOptions } from "./messages";

export interface MessagesState<TData = unknown> extends MessagesView<TData> {
  /**
   * Reads the page before the oldest message held and prepends it. Resolves when done (at once
   * when there is nothing older or a read is running); a failure is in `error`, not a rejection.
   */
  loadOlder(): Promise<void>;
}

/**
 * The room's messages for a list (roomcast/messages' followMessages, re-rendering): the latest
 * `limit` stored ones, read when the room is open, then live ones appended as they arrive, each
 * seq once (duplicates dropped by seq); `loadOlder()` pages back. This page's publishes show at
 * once as `pending` and turn into their stored copies on the room's ack (`failed` with the `error`
 * when refused). At most `max` messages (default 500). After a `gap` it starts over from the
 * latest page.
 */
export declare function useMessages<TData = unknown>(room: Room<TData, any, any> | null, options?: MessagesOptions): MessagesState<TData>;
