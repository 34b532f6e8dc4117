// roomcast/server: tokens, the backend HTTP API and webhook verification for an application's
// backend. ESM, fetch and WebCrypto only: Node 20+, Deno, Bun, Cloudflare Workers.
//
//   import { mintToken, createClient, verifyWebhook } from "roomcast/server";

/** A right a token grants in the rooms its pattern matches. */
export type Right = "subscribe" | "publish" | "presence" | "input";

export interface MintTokenOptions {
  /** ROOMCAST_SECRET: the HMAC key is its UTF-8 bytes exactly as set. Required. */
  secret: string;
  /**
   * The user id (`sub`): 1-64 of `A-Z a-z 0-9 _ - . : @`, not starting with ":" or "anon:"
   * (reserved for the backend's `:api` and anonymous users; the edge refuses them).
   */
  user: string;
  /**
   * Room patterns to rights: an exact room name, a prefix ending in `*` (`chat:*` matches
   * `chat:lobby`, not `chatroom`), or `*`. Rights from every matching pattern add up. Without
   * rooms the token grants nothing.
   */
  rooms?: Record<string, Right[]>;
  /** Lifetime in whole seconds (default 3600). Live connections are closed when it ends (4002). */
  ttlSeconds?: number;
  /** Presence metadata shown to others: a JSON object of at most 1,024 bytes. */
  meta?: Record<string, unknown>;
  /** The issue time, in ms since the epoch (default `Date.now()`; for tests). */
  now?: number;
}

/**
 * Mints an HS256 token (a JWT) for `user`, as docs/PROTOCOL.md ("Tokens") describes: the same
 * arguments and output as `tools/token.mjs`, asynchronous because it uses WebCrypto. It refuses
 * what the edge would refuse, with the edge's text after "mintToken: " (the table both are held
 * to: tests/golden/tokens.json): a user id that is empty, over 64 bytes, outside
 * `A-Z a-z 0-9 _ - . : @` or reserved; meta whose JSON (after `toJSON`) is not an object of at
 * most 1,024 bytes; an unknown right; a room pattern that cannot name a room; a token over 4,096
 * bytes. Also a missing secret, a ttl that is not a whole number above 0, or a bad `now`. Each is
 * a rejection with a TypeError. `rooms` and `meta` are serialized once: what is checked is signed.
 */
export declare function mintToken(options: MintTokenOptions): Promise<string>;

/**
 * The rejection of every client call that did not get a 2xx answer. The class keeps its name.
 */
export declare class RoomcastError extends Error {
  name: "RoomcastError";
  /**
   * The HTTP status of the refusal, or 0 when there was no answer: the request could not be
   * sent or its answer not read ("network"), or it took longer than `timeoutMs` ("timeout").
   */
  status: number;
  /**
   * The server's error code (`{"error":{"code",…}}`: "bad_request", "unauthorized",
   * "forbidden", "not_found", "too_large", "rate_limited", "storage", "backpressure" (507: the
   * room's webhook outbox is full; retry after `retryAfter`); docs/PROTOCOL.md "Errors over
   * HTTP"), or the client's: "network", "timeout", "bad_response" (a 2xx answer that is not
   * a JSON object), "http_error" (a refusal without the edge's error body whose status the
   * table does not name, e.g. a proxy's 502 or 503; a 4xx without one gets the table's code).
   */
  code:
    | "bad_request"
    | "unauthorized"
    | "forbidden"
    | "not_found"
    | "too_large"
    | "rate_limited"
    | "storage"
    | "backpressure"
    | "network"
    | "timeout"
    | "bad_response"
    | "http_error"
    | (string & {});
  /** "roomcast: METHOD /path: status and the server's message". */
  message: string;
  /** Seconds to wait before trying again, from the `Retry-After` header (429); undefined without one. */
  retryAfter: number | undefined;
  /** For "network": what fetch threw. */
  cause?: unknown;
}

export interface ClientOptions {
  /** The edge's URL, e.g. "https://rooms.example.com" (a path prefix is kept; ws(s): is taken as http(s):). */
  url: string;
  /**
   * ROOMCAST_API_KEY: the backend's credential; calls act as `:api`. A user's token also works
   * where its rights allow (publish, history, presence), acting as that user; stats, kick,
   * requeueWebhooks and deleteHistory take the API key only.
   */
  apiKey: string;
  /** The fetch to use (default: the global one, looked up at each call). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** Bound of one call, answer body included (default 30,000 ms; `Infinity`: none). */
  timeoutMs?: number;
}

/** A publish's answer. */
export interface PublishResult {
  /** The message's sequence number in the room. */
  seq: number;
  /** The id the publish gave. */
  id?: string;
  /** True when this id was already published (by this caller): `seq` is the first one's, nothing was stored. */
  duplicate?: true;
}

/** A batch publish's answer: one entry per item, in order. */
export interface PublishBatchResult {
  messages: PublishResult[];
}

/** One message to publish in a batch. */
export interface OutgoingMessage<TData = unknown> {
  /** Any JSON value; `null` is a value, `undefined` is refused. */
  data: TData;
  /** Idempotency key, 1-128 bytes, in the caller's namespace: a retry with the same id is applied once. */
  id?: string;
}

/** A stored message, as history returns it (a `message` frame). */
export interface StoredMessage<TData = unknown> {
  type: "message";
  seq: number;
  /** The publisher's client id; ":api" for the API key, ":http" for a token over HTTP. */
  from: string;
  /** The publisher's user id (":api" for the API key). */
  user: string;
  /** The publisher's message id, when it gave one. */
  id?: string;
  data: TData;
  /** When it was stored, ms since the epoch. */
  ts: number;
}

export interface HistoryOptions {
  /** Messages with a seq above this one (default 0). Not with `before`. */
  since?: number;
  /** The newest messages with a seq below this one (paging backwards). Not with `since`. */
  before?: number;
  /** At most this many (default 100, clamped by the server to 1 … HISTORY_PAGE_MAX). */
  limit?: number;
}

/** A page of history, in seq order. */
export interface HistoryPage<TData = unknown> {
  /** The room's current epoch: seqs are comparable within one epoch only. */
  epoch: string;
  /** The room's latest seq. */
  seq: number;
  /** Whether more messages exist in the direction read. */
  more: boolean;
  messages: StoredMessage<TData>[];
}

/** A member of the room, as the presence endpoint lists them (sorted by user). */
export interface Member<TMeta = Record<string, unknown>> {
  user: string;
  /** Open connections; 0 while the user is in the grace period after their last one closed. */
  connections: number;
  meta?: TMeta;
}

export interface PresenceResult<TMeta = Record<string, unknown>> {
  members: Member<TMeta>[];
}

/** The room's webhook delivery state (in stats). */
export interface WebhookStats {
  enabled: boolean;
  /** Events waiting to be delivered. */
  pending: number;
  /** Age of the oldest pending event in ms; null when none is pending. */
  oldestPendingAgeMs: number | null;
  /** Consecutive failed deliveries. */
  failures: number;
  lastError: string | null;
  /** Events set aside (older than WEBHOOK_MAX_AGE_SECONDS, or refused by the receiver); `requeueWebhooks` sends them again. */
  deadLetters: number;
  /** The dead letters the receiver refused alone (400, 413 or 422). */
  refused: number;
  /** The last event the receiver refused, or null. */
  lastRefused: { id: string; status: number } | null;
  delivered: number;
  /** Bytes of every event the outbox holds, pending and dead letters (what WEBHOOK_OUTBOX_MAX_BYTES bounds). */
  bytes: number;
  /** Whether the pending events hold the outbox's bound: a publish is refused now ("backpressure"). */
  full: boolean;
  /** Publishes and joins refused because the outbox was full, since `countersSince`. */
  backpressure: number;
  /** Dead letters deleted (their time was up, or a new event needed their room), since `countersSince`. */
  expired: number;
}

export interface Stats {
  epoch: string;
  seq: number;
  /** Open connections. */
  connections: number;
  /** Members, grace periods included. */
  users: number;
  /** Messages held in history. */
  history: number;
  /** Seq of the oldest message held; null when history is empty. */
  oldest: number | null;
  /** Messages stored since `countersSince`. */
  messagesIn: number;
  /** Live deliveries to connections since `countersSince`, one per recipient: stored messages (echoes included), direct messages and broadcasts; not replays or history pages. */
  messagesOut: number;
  /** Connections accepted since `countersSince`. */
  connectionsOpened: number;
  /** When this instance of the room started counting (ms since the epoch; restarts after hibernation). */
  countersSince: number;
  /** The webhook delivery state. */
  webhook: WebhookStats;
}

export interface KickOptions {
  /** The user to remove: a token's `sub`, or `anon:<name>`. */
  user: string;
  /** Also refuse the user's new connections, publishes and history reads for this long (0 to 2,592,000 s). */
  banSeconds?: number;
  /** For the application's records, at most 123 bytes. */
  reason?: string;
}

export interface KickResult {
  /** Connections closed (each with 4411, final). */
  closed: number;
}

export interface RequeueResult {
  /** Dead letters put back in the outbox (they keep their ids; they come after events already delivered). */
  requeued: number;
}

export interface DeleteHistoryResult {
  /** The room's new epoch: seq starts again at 0. */
  epoch: string;
  /** Messages deleted. */
  deleted: number;
}

/**
 * The backend HTTP API (docs/PROTOCOL.md, "HTTP API"). Every method returns a promise that
 * settles: with the answer's JSON as the server sent it, or a RoomcastError (a refusal, no
 * answer, or `timeoutMs` passed). Arguments the server would refuse for sure (a bad room name,
 * `data` undefined, an id outside 1-128 bytes, history options that are not whole numbers, or
 * `since` with `before`) reject with a TypeError before anything is sent.
 */
export interface RoomcastClient {
  /** `POST /rooms/:room/messages` with one message. */
  publish<TData = unknown>(room: string, data: TData, options?: { id?: string }): Promise<PublishResult>;
  /** `POST /rooms/:room/messages` with up to PUBLISH_BATCH_MAX (100) messages, validated and stored in order. */
  publishBatch<TData = unknown>(room: string, messages: OutgoingMessage<TData>[]): Promise<PublishBatchResult>;
  /** `GET /rooms/:room/history`: with no options, the first 100 messages after seq 0. */
  history<TData = unknown>(room: string, options?: HistoryOptions): Promise<HistoryPage<TData>>;
  /** `GET /rooms/:room/presence`. */
  presence<TMeta = Record<string, unknown>>(room: string): Promise<PresenceResult<TMeta>>;
  /** `GET /rooms/:room/stats` (API key only). */
  stats(room: string): Promise<Stats>;
  /** `POST /rooms/:room/kick` (API key only): closes the user's connections, optionally bans them. */
  kick(room: string, options: KickOptions): Promise<KickResult>;
  /**
   * `DELETE /sessions/:user` (API key only): closes every session socket of the user (created by
   * `createClient()` in the browser SDK) with 4411, which leaves their rooms; `closed` says how many.
   */
  closeSession(user: string): Promise<{ closed: number }>;
  /** `POST /rooms/:room/webhooks/requeue` (API key only): the room's dead letters back to pending. */
  requeueWebhooks(room: string): Promise<RequeueResult>;
  /**
   * `DELETE /rooms/:room/history` (API key only): wipes the stored messages and idempotency
   * records and starts a new epoch. Connected clients are closed with 4013 and, resuming, get a
   * `gap` with the new epoch. Pending webhook events are kept.
   */
  deleteHistory(room: string): Promise<DeleteHistoryResult>;
}

/** Creates a client; throws a TypeError at once without a url or an apiKey. */
export declare function createClient(options: ClientOptions): RoomcastClient;

// --- webhooks ---------------------------------------------------------------------------------

/** Every event: `id` is unique and stable across retries (drop duplicates by it). */
export interface WebhookEventBase {
  /** `evt_<16 hex>_<n>`. */
  id: string;
  type: string;
  room: string;
  /** When it happened, ms since the epoch. */
  ts: number;
}

/** A message was stored (only when WEBHOOK_EVENTS lists `message.published`). */
export interface MessagePublishedEvent<TData = unknown> extends WebhookEventBase {
  type: "message.published";
  epoch: string;
  seq: number;
  from: string;
  user: string;
  data: TData;
  /** The publisher's message id, when it gave one. */
  messageId?: string;
}

/** A user became present (a reconnect within the grace period is not a join). */
export interface PresenceJoinedEvent<TMeta = Record<string, unknown>> extends WebhookEventBase {
  type: "presence.joined";
  user: string;
  meta?: TMeta;
}

/** A user's grace period ended with no connection back: once per departure. */
export interface PresenceLeftEvent<TMeta = Record<string, unknown>> extends WebhookEventBase {
  type: "presence.left";
  user: string;
  meta?: TMeta;
}

/** A connection opened in a room nobody was in. */
export interface RoomOccupiedEvent extends WebhookEventBase {
  type: "room.occupied";
}

/** The last member left (after their grace period). */
export interface RoomVacatedEvent extends WebhookEventBase {
  type: "room.vacated";
}

export type WebhookEvent<TData = unknown, TMeta = Record<string, unknown>> =
  | MessagePublishedEvent<TData>
  | PresenceJoinedEvent<TMeta>
  | PresenceLeftEvent<TMeta>
  | RoomOccupiedEvent
  | RoomVacatedEvent;

/** A webhook POST's body: a room's events, in the order they happened. */
export interface WebhookPayload<TData = unknown, TMeta = Record<string, unknown>> {
  events: WebhookEvent<TData, TMeta>[];
}

export interface VerifyWebhookOptions {
  /** Largest difference between `webhook-timestamp` and now, either way (default 300 s). */
  toleranceSeconds?: number;
  /** Now, in ms since the epoch (default `Date.now()`; for tests). */
  now?: number;
}

/** Why a webhook request was refused; answer it with 401 (or 400 for "bad_body"). */
export declare class WebhookVerificationError extends Error {
  name: "WebhookVerificationError";
  /**
   * "missing_header" (webhook-id, webhook-timestamp or webhook-signature), "bad_timestamp" (not
   * whole seconds), "timestamp_too_old" / "timestamp_too_new" (outside the tolerance),
   * "bad_signature" (no `v1` signature matches), "bad_body" (signed, but not `{"events":[…]}`).
   */
  code: "missing_header" | "bad_timestamp" | "timestamp_too_old" | "timestamp_too_new" | "bad_signature" | "bad_body";
}

/** Request headers: a fetch `Headers`, or a plain object such as Node's `req.headers` (any case). */
export type HeadersLike = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

/**
 * Verifies a webhook request with the Standard Webhooks scheme and returns its parsed body.
 * `body` must be the raw body exactly as received (a string or its bytes), not parsed and
 * serialized again. `secret` is WEBHOOK_SECRET (`whsec_` + base64; the prefix is optional).
 * The signature is HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.${body}`; the header may
 * carry several space-separated `v1,<base64>` entries (during a key rotation): one match is
 * enough, and each is compared in constant time.
 * Rejects with a WebhookVerificationError (see its `code`), or a TypeError for a secret that is
 * not base64 or a body that is neither a string nor bytes.
 */
export declare function verifyWebhook<TData = unknown, TMeta = Record<string, unknown>>(
  body: string | Uint8Array | ArrayBuffer,
  headers: HeadersLike,
  secret: string,
  options?: VerifyWebhookOptions,
): Promise<WebhookPayload<TData, TMeta>>;
