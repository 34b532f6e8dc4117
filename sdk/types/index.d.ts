// roomcast browser SDK. `import { connect } from "roomcast"`: no init call.

export type State = "connecting" | "open" | "reconnecting" | "closed";

export interface ConnectOptions {
  /** The edge's base URL, e.g. "https://rooms.example.com" or "ws://127.0.0.1:8787". */
  url: string;
  /** The room name: 1-128 of A-Z a-z 0-9 _ - . : */
  room: string;
  /** A token, or a function returning one (or a Promise of one), called before every attempt. */
  token?: string | (() => string | Promise<string>);
  /** Stable across reconnects (default: random per connect()). 1-64 of A-Z a-z 0-9 _ - */
  clientId?: string;
  /** Also receive your own publishes as `message` events (default false). */
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
  /** The close code behind the change (0 if none). 4400-4499 are final. */
  code: number;
  reason: string;
}

export interface GapEvent {
  /** "retention" | "epoch" | "ahead" | "unavailable" */
  reason: string;
  /** The last seq seen before the gap; fetch history after it if needed. */
  since: number;
}

export interface DirectEvent<T = unknown> {
  from: string;
  user: string;
  data: T;
  ts: number;
}

export interface ErrorEvent {
  code: string;
  message?: string;
  id?: string;
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
  /** The last seq seen (delivered or acknowledged). */
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
