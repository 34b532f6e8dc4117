// roomcast browser SDK. `import { connect } from "roomcast"`: no init call.
//
// Typed by three parameters, all optional: `connect<TData, TMeta, TBroadcast>(…)` gives a
// `Room<TData, TMeta, TBroadcast>`. TData: what `publish` sends and `message` events, `history`
// pages carry. TMeta: presence metadata (`setPresence`, `members()`, `presence` events).
// TBroadcast: what `broadcast` sends and `broadcast` events carry (default: TData). These are
// promises about what the room's members send, not checks: the SDK does not validate payloads.

export type State = "connecting" | "open" | "reconnecting" | "closed";

/**
 * A clock for the `clock` option: time and timers, all three. Tests pass a fake one (see
 * sdk/test/fakes.mjs); the default is the platform's `Date.now`, `setTimeout` and `clearTimeout`.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: any): void;
}

/** What the SDK needs of a WebSocket class: the browser's, or the `ws` package's on Node 20. */
export interface WebSocketLike {
  readonly readyState: number;
  // (`any` events, so both the DOM's and the ws package's handler types fit)
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ConnectOptions {
  /** The edge's base URL, e.g. "https://rooms.example.com" or "ws://127.0.0.1:8787". */
  url: string;
  /**
   * The room name: 1-128 of A-Z a-z 0-9 _ - . : (the server's rule). Anything else makes
   * connect() throw a TypeError before anything is opened.
   */
  room: string;
  /**
   * A token, or a function returning one (or a Promise of one). A function is called before every
   * attempt, and again before the connection's token expires: the fresh token is handed to the
   * room on the open connection (a `refresh` frame), so the connection is not closed at expiry.
   * A fixed string cannot be refreshed: at expiry the room closes the connection (4002) and the
   * reconnect is refused (4401).
   *
   * A function that throws, rejects, resolves to something that is not a token (a compact JWS:
   * three base64url parts; an HTTP error body, say: the message quotes its first 40 characters),
   * or does not answer within `connectTimeoutMs` has failed: an `error` event (`token_failed`,
   * with what it threw, or what it returned, as `cause`), and the attempt is retried with backoff.
   * After `maxTokenFailures` failures in a row the room closes for good (status `closed`, code
   * 4000, "token fetch failed too many times in a row"). Failures while the browser is offline,
   * and fetches that could not reach their server (a `TypeError` from `fetch`), do not count: the
   * room waits for the network, and tries at once when it is back. A failed refresh of an open
   * connection is an `error` event too but does not count: it is retried while the token is valid.
   */
  token?: string | (() => string | Promise<string>);
  /**
   * Stable across reconnects (default: random per connect()). 1-64 of A-Z a-z 0-9 _ - (else
   * connect() throws a TypeError). Use one per tab: with echo off the room holds back messages
   * by client id, so two tabs sharing one would miss each other's messages on resume.
   */
  clientId?: string;
  /**
   * Also receive your own publishes as `message` events (default false). Off, messages whose
   * `from` is this clientId are never delivered (live or replayed after a reconnect), but they
   * still move `lastSeq` on.
   */
  echo?: boolean;
  /**
   * The shortest wait before a retry, in ms (default 500): a true minimum. Attempt n waits
   * uniformly in [min, min(max, min × factor^n)].
   */
  minReconnectDelayMs?: number;
  /** Largest backoff window (default 30000). */
  maxReconnectDelayMs?: number;
  /** Backoff growth per attempt (default 2). */
  reconnectFactor?: number;
  /** Full jitter on (default). Off only to compare reconnect storms. */
  jitter?: boolean;
  /** The attempt count resets only after a connection stayed up this long (default 5000). */
  minUptimeMs?: number;
  /** Time allowed from an attempt to the server's welcome (default 10000). */
  connectTimeoutMs?: number;
  /**
   * Heartbeat ping interval (default 20000). Once open, the SDK pings every min(this, the
   * welcome's `heartbeat.interval`), so it never pings less often than the room expects.
   */
  pingIntervalMs?: number;
  /**
   * A pong later than this marks the connection dead (default 10000). While the page is visible
   * the SDK pings at least every 4 s and waits at most 4 s for the pong (sdk/README.md, Liveness).
   */
  pongTimeoutMs?: number;
  /** Most unacknowledged publishes kept while offline (default 1000); beyond, publish() rejects. */
  queueMax?: number;
  /**
   * Failed token fetches in a row before the room closes for good (default 10; Infinity: never).
   * Failures while offline or unreachable do not count.
   */
  maxTokenFailures?: number;
  /** Seed for the jitter and message ids (default random). */
  seed?: number;
  /**
   * The WebSocket class (default: the global `WebSocket`). Node 20 has none without
   * `--experimental-websocket`: pass the `ws` package's (`import { WebSocket } from "ws"`).
   */
  WebSocket?: new (
    url: string,
    protocols: string[],
  ) => WebSocketLike;
  /** Time and timers (default: the platform's). */
  clock?: Clock;
  /**
   * On a connection without a resume point (the first one, and any before the first welcome),
   * the last N stored messages (at most the room's HISTORY_PAGE_MAX, 1,000 by default) arrive as
   * ordinary `message` events, in order, before any live one, with no gap or duplicate at the
   * boundary. Reconnects resume from `lastSeq` instead (missed messages are replayed, or a
   * `gap`). Default 0. Not a whole number: connect() throws a TypeError. Echo rules apply: with
   * echo off your own messages are skipped.
   */
  rewind?: number;
  /**
   * Logs state transitions and frames with `console.debug` (default false). Off, nothing is
   * formatted: it costs nothing.
   */
  debug?: boolean;
  /**
   * Receives what `debug` would log, instead of the console: `("connect", url)`,
   * `("send", frameText)`, `("receive", messageText)` (one WebSocket message: frames joined by
   * line feeds), `("close", { code, reason })` (the SDK closes a socket), `("closed", { code,
   * reason })` (a socket closed), `("status", StatusEvent)`. Tokens are never passed to it. One
   * that throws costs nothing: its error is rethrown on its own (in a microtask).
   */
  logger?: (kind: LogKind, detail: unknown) => void;
}

export type LogKind = "connect" | "send" | "receive" | "close" | "closed" | "status";

export interface Message<T = unknown> {
  seq: number;
  /** The publisher's client id, or ":api" (API key) or ":http" (a token) for the HTTP API. */
  from: string;
  user: string;
  /**
   * The publisher's message id, when it gave one (the SDK always does; the HTTP API when the
   * body's `id` was set). Unique per publisher: an app that shows its own messages before the
   * room's copy arrives can match them by it.
   */
  id?: string;
  data: T;
  /** Server time of storing, ms since the epoch. */
  ts: number;
}

export interface Member<TMeta extends object = Record<string, unknown>> {
  user: string;
  /** Open connections; 0 during the grace period after the last one closed. */
  connections: number;
  /**
   * The member's presence metadata: the token's `meta`, replaced by `setPresence()` for that
   * connection; for a user on several connections, that of the newest connection that has one.
   */
  meta?: TMeta;
}

export interface PresenceEvent<TMeta extends object = Record<string, unknown>> {
  /** Everyone now, as `room.members()` returns it. */
  members: Member<TMeta>[];
  joined: Member<TMeta>[];
  left: string[];
  /** Members whose connection count or metadata changed (a `setPresence()` anywhere). */
  updated: Member<TMeta>[];
}

/** Options of `room.broadcast()`. */
export interface BroadcastOptions {
  /** Wait for the room's answer (default false: resolve once sent). */
  ack?: boolean;
}

/** An ephemeral message (`room.broadcast()`): no seq, never stored or replayed. */
export interface BroadcastEvent<T = unknown> {
  /** The sender's client id. */
  from: string;
  user: string;
  data: T;
  /** Server time of sending, ms since the epoch. */
  ts: number;
}

export interface HistoryOptions {
  /** How many messages (default 100; the room clamps to 1 … HISTORY_PAGE_MAX, 1,000 by default). */
  limit?: number;
  /** The newest messages with a seq below this one (page backwards). */
  before?: number;
  /** The oldest messages with a seq above this one (page forwards). Not with `before`. */
  since?: number;
}

export interface HistoryPage<T = unknown> {
  /** In seq order, whichever way the page was read. Your own messages included, whatever echo. */
  messages: Message<T>[];
  /** Whether more messages exist in the direction read (older for latest or `before`, newer for `since`). */
  more: boolean;
}

export interface StatusEvent {
  state: State;
  /** Failed attempts in a row. */
  attempt: number;
  /** Until the next attempt (reconnecting). */
  delayMs: number;
  /**
   * The close code behind the change (0 if none), one table for the server, the SDK's wasm and
   * this layer (protocol/src/close.rs). 4400-4499 are final (the state is `closed`):
   * 4400 bad request (the edge's message says what: room name, query, …), 4401 unauthorized,
   * 4403 forbidden, 4409 room full, 4410 too many connections for this user, 4411 removed from
   * the room, 4412 client id belongs to another user.
   * Retried with backoff: 4001 heartbeat timeout (the room heard nothing from this client),
   * 4002 token expired (the retry fetches a fresh token from a token function), 4008 not
   * reading (the client fell behind echoing the room's read marks; the SDK echoes them), 4009 frame too
   * large (a frame far over the room's frame limit, which this SDK never sends), 4013 room reset
   * (the backend deleted the room's history: the reconnect reports a `gap`), 4029 too many
   * errors, rate limited, read budget exceeded; retry later, or webhook backlog full; retry later
   * (the room cannot record this user's arrival until its webhook receiver catches up); and the
   * standard 1001 going away, 1006 connection lost, 1009 message too big. 1000 client closed:
   * `close()`.
   * 4000 is the SDK's own, never sent by a server: retried after a connect timeout, heartbeat
   * missed (no pong), message out of order, or token fetch failed; final (`closed`) after token
   * fetch failed too many times in a row, or when the WebSocket could not be created.
   * `reason` is the server's close reason, or the table's when it sent none.
   */
  code: number;
  reason: string;
}

/**
 * Messages after `since` were missed and will not be replayed. `reason`: "retention" (no longer in
 * history), "epoch" (the room's history was reset), "ahead" (the room is behind `since`: it no
 * longer has messages this client saw), "unavailable" (history could not be read just now).
 */
export interface GapEvent {
  reason: "retention" | "epoch" | "ahead" | "unavailable" | (string & {});
  /** The last seq seen before the gap; fetch history after it if needed. */
  since: number;
}

export interface DirectEvent<T = unknown> {
  from: string;
  user: string;
  data: T;
  ts: number;
}

/**
 * Something the app should know that no promise carries. Nothing is lost by any of them: the SDK
 * goes on delivering the room's messages, in order, each once. Frames of types the SDK does not
 * know are ignored silently (forward compatibility), not reported. `code`:
 * - "out_of_order": a message (or a publish's ack) claimed seq `received` when `expected` was
 *   next. It was not delivered; the SDK dropped the connection and resumes from `expected - 1`,
 *   so the room replays whatever is really missing (status `reconnecting`, code 4000).
 * - "bad_frame": a line from the server that is not JSON, not a frame, or a frame of a known type
 *   with the wrong shape (`frame`: its first 200 characters). It was ignored.
 * - a server `error` frame that answers no pending call (`message` is the server's; `id` when it
 *   names one): "unauthorized" or "forbidden" when the room refused a refreshed token (the
 *   connection keeps its old token until it expires, then reconnects with a fresh one),
 *   "rate_limited", "bad_frame", … (docs/PROTOCOL.md lists them).
 * - the room's refusal of the presence meta the SDK sends again after a reconnect (no call waits
 *   for it; `id` names its frame): the room then keeps the token's meta until `setPresence()`.
 * - "token_failed": the token function threw, rejected or returned no string (`cause`: what it
 *   threw or returned). See ConnectOptions.token for what follows.
 * - "host_error": the WebSocket (or the clock) threw (`cause`); the SDK went on. A WebSocket
 *   that cannot even be created closes the room (4000).
 */
export interface ErrorEvent {
  code: "out_of_order" | "bad_frame" | "token_failed" | "host_error" | "unauthorized" | "forbidden" | "rate_limited" | (string & {});
  message?: string;
  /** token_failed, host_error: what the app's token function or the WebSocket threw (or returned). */
  cause?: unknown;
  /** The message id a server error names. */
  id?: string;
  /** rate_limited: how long until the same frame would pass (the room's `retryAfterMs`). */
  retryAfterMs?: number;
  /** out_of_order: the seq that was next. */
  expected?: number;
  /** out_of_order: the seq the frame claimed. */
  received?: number;
  /** bad_frame: the start of the line that was ignored. */
  frame?: string;
}

export interface Events<TData = unknown, TMeta extends object = Record<string, unknown>, TBroadcast = TData> {
  message: Message<TData>;
  presence: PresenceEvent<TMeta>;
  status: StatusEvent;
  gap: GapEvent;
  direct: DirectEvent;
  broadcast: BroadcastEvent<TBroadcast>;
  error: ErrorEvent;
  /** A room joined with createClient(): the user's read position moved (on any of their devices). */
  read: ReadEvent;
  /**
   * publish() was called (before it is sent: offline too): its message id (undefined when refused
   * at once), its data, and the promise publish() returned. For lists that show it at once
   * (roomcast/messages).
   */
  publish: { id?: string; data: TData; result: Promise<number> };
}

export interface ReadEvent {
  /** The user's read position: every message up to this seq is read. */
  seq: number;
  /** The messages after it that this room has delivered (`lastSeq - seq`). */
  unread: number;
}

/**
 * Why `publish()` or `sendTo()` rejected. `message` is the server's when it refused the call.
 * The class keeps its name (`RoomcastError`) in the minified package.
 */
export declare class RoomcastError extends Error {
  /**
   * A server error code ("forbidden", "rate_limited", "too_large", "no_recipient", …), or the
   * SDK's: "too_large" (over the room's frame limit, `limits.maxFrameBytes` or 65536 before the
   * first welcome: refused before it was sent), "queue_full", "offline" (sendTo while not open),
   * "disconnected" (a direct message whose connection dropped before the room answered: it may
   * or may not have been delivered), "closed" (the room closed: `closeCode` says how).
   * For `history()` and `broadcast()` (never queued): "offline" when not open, "disconnected"
   * when the socket went before the answer (a broadcast may or may not have been delivered),
   * "too_large" (over `limits.broadcastMaxBytes` or `limits.maxFrameBytes`), "bad_frame" (the
   * room's history answer was malformed). A WebSocket whose send throws is an `error` event
   * ("host_error"); the call then settles like any other (the answer, or "disconnected").
   * For `setPresence()`: "too_large" (meta over `limits.presenceMetaMax`), "closed", or the
   * room's refusal ("forbidden" without the publish right, "rate_limited").
   */
  code: "too_large" | "queue_full" | "offline" | "disconnected" | "closed" | "bad_frame" | "host_error" | (string & {});
  /** The close code when the room closed ("closed"), see StatusEvent.code. */
  closeCode?: number;
  /** The message id the server named. */
  id?: string;
  /** "rate_limited": how long until the same call would pass (the room's `retryAfterMs`). */
  retryAfterMs?: number;
  /** Closed by the SDK itself (closeCode 4000): what the token function or the WebSocket threw. */
  cause?: unknown;
}

/**
 * What the room enforces on this connection, from the welcome's `limits` (docs/PROTOCOL.md).
 * Before the first welcome only the three the SDK checks are known: the server's defaults.
 */
export interface Limits {
  /** The largest frame, in UTF-8 bytes (65,536 by default): larger publishes are refused locally. */
  maxFrameBytes: number;
  /** The largest presence meta, in compact JSON bytes (1,024 by default). */
  presenceMetaMax: number;
  /** The largest broadcast frame, in bytes (16,384 by default). */
  broadcastMaxBytes: number;
  messagesPerSec?: number;
  messagesBurst?: number;
  bytesPerSec?: number;
  messageIdMax?: number;
  /** Broadcasts and presence changes per second (burst `broadcastsBurst`). */
  broadcastsPerSec?: number;
  broadcastsBurst?: number;
}

export interface Room<TData = unknown, TMeta extends object = Record<string, unknown>, TBroadcast = TData> {
  readonly clientId: string;
  /** The user this connection is (the token's `sub`), from the last welcome; undefined before. */
  readonly user?: string;
  readonly state: State;
  /** The last seq seen (delivered, acknowledged, or an own message skipped with echo off). */
  readonly lastSeq: number;
  /** The room's limits from the last welcome (a fresh copy each read). */
  readonly limits: Limits;
  on<E extends keyof Events>(event: E, handler: (payload: Events<TData, TMeta, TBroadcast>[E]) => void): () => void;
  /**
   * Resolves with the message's seq once the server stored it; queued while offline. Every call
   * settles: it rejects (RoomcastError) when the room refuses it (never resent), when it is over
   * the room's frame limit (never sent), when the queue is full, or when the room closes.
   */
  publish(data: TData): Promise<number>;
  /** A direct message to one client id, or to every connection of a user. Not queued or resent. */
  sendTo(target: { user: string } | { clientId: string }, data: unknown): Promise<void>;
  /**
   * Input for a shared terminal (`roomcast terminal`, docs/CLI.md) to its agent's client id:
   * `{ keys }` types, `{ resize: [rows, cols] }` resizes. Rejects with "forbidden" unless the
   * token holds the `input` right for the room. Not queued or resent.
   */
  sendInput(target: { user: string } | { clientId: string }, data: { keys: string } | { resize: [number, number] }): Promise<void>;
  /**
   * A page of stored messages, read over the room's socket, in seq order: with neither `before`
   * nor `since` the latest `limit`; `before: seq` pages back, `since: seq` forward. It does not
   * move `lastSeq` or emit `message` events. Not queued: it rejects with "offline" when not open,
   * "disconnected" when the connection drops before the answer, "closed", or the room's refusal
   * ("rate_limited": over the message rate or the read budget; "forbidden": banned). Options
   * that are not whole numbers, or `before` with `since`, reject with a TypeError.
   */
  history(options?: HistoryOptions): Promise<HistoryPage<TData>>;
  /**
   * Sends `data` now to the room's other connections (yours too with echo on) as a `broadcast`
   * event: not stored, no seq, never replayed, not seen by members who join later. Resolves when
   * the frame was handed to the socket; the room's refusals ("forbidden" without the publish
   * right, "rate_limited" over `limits.broadcastsPerSec`) then come as `error` events, the way
   * cursor and typing streams want them (no answer frame per broadcast). With `{ ack: true }` it
   * resolves when the room sent it and rejects with the room's refusal, or "disconnected" when
   * the connection drops before the answer. Not queued: rejects with "offline" when not open, and
   * "too_large" (the frame over `limits.broadcastMaxBytes`, 16 KiB by default: never sent).
   */
  broadcast(data: TBroadcast, options?: BroadcastOptions): Promise<void>;
  /**
   * Replaces this connection's presence metadata (the token's `meta` until then). Everyone with
   * the presence right, you included, gets a `presence` event with it in `updated`, coalesced by
   * the room (at most `PRESENCE_RATE_PER_SEC` frames per second per member). `meta` must be a
   * plain object (else a TypeError) of at most `limits.presenceMetaMax` bytes as JSON (1,024 by
   * default; else "too_large", not sent).
   *
   * One change is in flight at a time and the newest wins: calls made meanwhile resolve together
   * when the newest is taken, so a 60 Hz loop costs one frame per round trip. Not open, the meta
   * waits for the connection (nothing is lost, the promise resolves once the room took it); after
   * every reconnect the SDK sends the last meta again, since a new connection starts with the
   * token's. It rejects when the room refuses it ("forbidden" without the publish right,
   * "rate_limited", which shares the broadcast rate) or closes ("closed").
   */
  setPresence(meta: TMeta): Promise<void>;
  members(): Member<TMeta>[];
  /**
   * Reconnects now if waiting out a backoff (the app knows the network is back), or checks the
   * open connection with a ping (no pong within 4 s: `reconnecting`). A room joined with
   * createClient(): its client's socket (client.reconnect()).
   */
  reconnect(): void;
  /**
   * Closes for good: no timers, no reconnects; pending publishes, history reads, broadcasts and
   * presence changes reject with "closed".
   */
  close(): void;
  /**
   * A room joined with createClient() only (a TypeError otherwise): the user has read the room up
   * to `seq`. Stored by the user's session and sent to every device of theirs (`read` event);
   * never moves back; a seq past the room's latest is taken as the latest. Sent only while the
   * room is open (ignored before).
   */
  markRead(seq: number): void;
  /** A room joined with createClient(): the user's read position (0 before any). */
  readonly readSeq: number;
  /** A room joined with createClient(): the messages delivered after the read position. */
  readonly unread: number;
  /** Leaves a room joined with createClient() (the same as close()). */
  leave(): void;
}

/**
 * createClient()'s options: those of connect() but `room` (each join names its room), with the
 * token required (a session is a user's: anonymous users have none).
 */
export interface ClientOptions extends Omit<ConnectOptions, "room" | "token" | "rewind" | "echo"> {
  token: string | (() => string | Promise<string>);
}

/** What join() takes: how this room starts, as connect() does. */
export interface JoinOptions {
  /** The last N stored messages first (on the first join; a rejoin resumes). */
  rewind?: number;
  /** Receive your own publishes too (default false, as connect()). */
  echo?: boolean;
}

/** A watched room's latest seq and the messages after the user's read position. */
export interface WatchEvent {
  room: string;
  seq: number;
  unread: number;
}

export interface ClientEvents {
  /** The socket's state, as a room's (one backoff for all the rooms). */
  status: StatusEvent;
  error: ErrorEvent;
  watch: WatchEvent;
  /** The user's read position in a room moved (on any of their devices). */
  read: { room: string; seq: number };
}

/** One socket (GET /session/ws) for any number of rooms: see createClient(). */
export interface Client {
  readonly clientId: string;
  readonly status: State;
  on<E extends keyof ClientEvents>(event: E, handler: (payload: ClientEvents[E]) => void): () => void;
  /**
   * Joins a room over this client's socket: a Room with connect()'s interface and events, plus
   * markRead(), readSeq, unread and leave(). The room is checked against the token at each join
   * (a refusal closes that Room with the room socket's close code; the socket stays). Joining a
   * room that is joined returns it.
   */
  join<TData = unknown, TMeta extends object = Record<string, unknown>, TBroadcast = TData>(
    room: string,
    options?: JoinOptions,
  ): Room<TData, TMeta, TBroadcast>;
  /**
   * The rooms to show without joining them (a sidebar): `watch` events with their latest seq and
   * unread count, at most one per room per second; replaces the last list. Costs the room one call
   * to the user's session per second while it is busy, nothing while it is quiet.
   */
  watch(rooms: string[]): void;
  /** The rooms joined or watched: their latest seq, the user's read position, the unread count. */
  rooms(): { room: string; seq: number; readSeq: number; unread: number }[];
  /** Reconnects now if waiting (the app knows the network is back), or checks the link at once. */
  reconnect(): void;
  /** Leaves every room and closes the socket for good. */
  close(): void;
}

/**
 * One socket for any number of rooms (docs/PROTOCOL.md, Sessions): one backoff, one heartbeat and
 * one token refresh for all of them; after a reconnect every joined room resumes at once from its
 * own seq. A user's sockets (tabs, devices) share their read positions.
 */
export declare function createClient(options: ClientOptions): Client;

/**
 * Opens a room. The type parameters describe the payloads (see the top of this file); the room
 * does not check them.
 */
export declare function connect<TData = unknown, TMeta extends object = Record<string, unknown>, TBroadcast = TData>(
  options: ConnectOptions,
): Room<TData, TMeta, TBroadcast>;
