// roomcast browser SDK. `import { connect } from "roomcast"`: no init call.

export type State = "connecting" | "open" | "reconnecting" | "closed";

export interface ConnectOptions {
  /** The edge's base URL, e.g. "https://rooms.example.com" or "ws://127.0.0.1:8787". */
  url: string;
  /** The room name: 1-128 of A-Z a-z 0-9 _ - . : */
  room: string;
  /**
   * A token, or a function returning one (or a Promise of one). A function is called before every
   * attempt, and again before the connection's token expires: the fresh token is handed to the
   * room on the open connection (a `refresh` frame), so the connection is not closed at expiry.
   * A fixed string cannot be refreshed: at expiry the room closes the connection (4002) and the
   * reconnect is refused (4401).
   */
  token?: string | (() => string | Promise<string>);
  /** Stable across reconnects (default: random per connect()). 1-64 of A-Z a-z 0-9 _ - */
  clientId?: string;
  /**
   * Also receive your own publishes as `message` events (default false). Off, messages whose
   * `from` is this clientId are never delivered (live or replayed after a reconnect), but they
   * still move `lastSeq` on.
   */
  echo?: boolean;
  /** Backoff window of the first retry, in ms (default 500). Attempt n waits uniformly in [0, min(max, min × factor^n)]. */
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
  /** Heartbeat ping interval (default 20000). */
  pingIntervalMs?: number;
  /** A pong later than this marks the connection dead (default 10000). */
  pongTimeoutMs?: number;
  /** Most unacknowledged publishes kept while offline (default 1000); beyond, publish() rejects. */
  queueMax?: number;
  /** Seed for the jitter and message ids (default random). */
  seed?: number;
}

export interface Message<T = unknown> {
  seq: number;
  /** The publisher's client id, or ":api" for the HTTP API. */
  from: string;
  user: string;
  data: T;
  /** Server time of storing, ms since the epoch. */
  ts: number;
}

export interface Member {
  user: string;
  /** Open connections; 0 during the grace period after the last one closed. */
  connections: number;
  meta?: Record<string, unknown>;
}

export interface PresenceEvent {
  members: Member[];
  joined: Member[];
  left: string[];
}

export interface StatusEvent {
  state: State;
  /** Failed attempts in a row. */
  attempt: number;
  /** Until the next attempt (reconnecting). */
  delayMs: number;
  /**
   * The close code behind the change (0 if none). 4400-4499 are final (the state is `closed`):
   * 4400 bad request, 4401 unauthorized, 4403 forbidden, 4409 room full, 4410 too many
   * connections for this user, 4411 removed from the room, 4412 client id belongs to another
   * user. Others are retried: 4000 going away (also the SDK's own reason for dropping a connection
   * whose messages arrived out of order, or that never got its welcome), 4001 heartbeat timeout,
   * 4002 token expired (the retry fetches a fresh token from a token function), 4029 rate limited
   * or read budget exceeded.
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
 * goes on delivering the room's messages, in order, each once. `code`:
 * - "out_of_order": a message (or a publish's ack) claimed seq `received` when `expected` was
 *   next. It was not delivered; the SDK dropped the connection and resumes from `expected - 1`,
 *   so the room replays whatever is really missing (status `reconnecting`, code 4000).
 * - "bad_frame": a line from the server that is not JSON, or not a frame of a known type and
 *   shape (`frame`: its first 200 characters). It was ignored.
 * - a server `error` frame that answers no pending call (`message` is the server's; `id` when it
 *   names one): "unauthorized" or "forbidden" when the room refused a refreshed token (the
 *   connection keeps its old token until it expires, then reconnects with a fresh one),
 *   "rate_limited", "bad_frame", … (docs/PROTOCOL.md lists them).
 */
export interface ErrorEvent {
  code: "out_of_order" | "bad_frame" | "unauthorized" | "forbidden" | "rate_limited" | (string & {});
  message?: string;
  /** The message id a server error names. */
  id?: string;
  /** out_of_order: the seq that was next. */
  expected?: number;
  /** out_of_order: the seq the frame claimed. */
  received?: number;
  /** bad_frame: the start of the line that was ignored. */
  frame?: string;
}

export interface Events {
  message: Message;
  presence: PresenceEvent;
  status: StatusEvent;
  gap: GapEvent;
  direct: DirectEvent;
  error: ErrorEvent;
}

export declare class RoomcastError extends Error {
  /** "queue_full" | "closed" | "offline" | a server error code ("forbidden", "rate_limited", …) */
  code: string;
}

export interface Room {
  readonly clientId: string;
  readonly state: State;
  /** The last seq seen (delivered, acknowledged, or an own message skipped with echo off). */
  readonly lastSeq: number;
  on<E extends keyof Events>(event: E, handler: (payload: Events[E]) => void): () => void;
  /** Resolves with the message's seq once the server stored it; queued while offline. */
  publish(data: unknown): Promise<number>;
  /** A direct message to one client id, or to every connection of a user. Not queued. */
  sendTo(target: { user: string } | { clientId: string }, data: unknown): Promise<void>;
  members(): Member[];
  /** Closes for good: no timers, no reconnects; pending publishes reject with "closed". */
  close(): void;
}

export declare function connect(options: ConnectOptions): Room;
