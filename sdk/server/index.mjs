// roomcast/server: what an application's backend needs, with fetch and WebCrypto only (no node:
// imports), so it runs in Node 20+, Deno, Bun and Workers alike.
//
// - mintToken: the HS256 tokens clients connect with (the same bytes as tools/token.mjs);
// - createClient: the backend HTTP API (docs/PROTOCOL.md, "HTTP API");
// - verifyWebhook: the Standard Webhooks signature check for the room's webhooks (docs/WEBHOOKS.md).
//
// Types and documentation of every option: index.d.ts next to this file.

const RIGHTS = new Set(["subscribe", "publish", "presence", "input"]);
// A user-limited room (`dm~alice,bob`) lists user ids after a `~`; the server checks their order.
const ROOM_NAME = /^(?=.{1,128}$)[A-Za-z0-9_.:-]+(~[A-Za-z0-9_.:@-]{1,64}(,[A-Za-z0-9_.:@-]{1,64})*)?$/;
const META_MAX_BYTES = 1024;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_TOLERANCE_SECONDS = 300;
const WHSEC = "whsec_";
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// --- errors --------------------------------------------------------------------------------------

// The package's one error shape, the same text as sdk/js/error.js (the browser SDK's; a test
// holds them together): here an HTTP API call that failed, with `status` (0: no answer at all).
/**
 * Why a call failed: `code` (the server's, or the SDK's), `message`, and the fields that apply
 * (`status` and `retryAfter` over HTTP, `closeCode` when a room closed, `id` of the message the
 * server named), with `cause` when something else threw. The name survives minification.
 */
export class RoomcastError extends Error {
  constructor(code, message, { cause, ...fields } = {}) {
    super(message ?? code, cause === undefined ? undefined : { cause });
    this.name = "RoomcastError";
    this.code = code;
    for (const k in fields) if (fields[k] !== undefined) this[k] = fields[k];
  }
}
Object.defineProperty(RoomcastError, "name", { value: "RoomcastError" });

/** A webhook request that is not what the room signed, or not signed recently enough. */
export class WebhookVerificationError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "WebhookVerificationError";
    this.code = code;
  }
}

// --- bytes ---------------------------------------------------------------------------------------

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const toBase64Url = (bytes) => toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** Standard base64 (padding optional) to bytes; undefined when it is not base64. */
function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** Equal bytes, in time that depends on the lengths only. */
function timingSafeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function hmacKey(bytes) {
  return crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

/** One imported key per secret, kept for the last few secrets used (a backend uses one or two). */
const keys = new Map();
function cachedKey(cacheKey, bytes) {
  let key = keys.get(cacheKey);
  if (!key) {
    key = hmacKey(bytes);
    key.catch(() => keys.delete(cacheKey));
    if (keys.size >= 8) keys.delete(keys.keys().next().value);
    keys.set(cacheKey, key);
  }
  return key;
}

async function hmac(key, bytes) {
  return new Uint8Array(await crypto.subtle.sign("HMAC", await key, bytes));
}

// --- tokens --------------------------------------------------------------------------------------

// What the edge refuses in a token, with the edge's own text (protocol/src/token.rs, name.rs):
// tests/golden/tokens.json holds both to one table (sdk/test/server.test.mjs,
// protocol/tests/token_contract.rs), so they cannot drift.
const MAX_TOKEN_BYTES = 4096;
const USER_MAX_BYTES = 64;
const ROOM_NAME_MAX_BYTES = 128;
const CLAIMS = "token claims are invalid: ";
// serde's words for them, as the edge refuses an unknown right
const KNOWN_RIGHTS = "`subscribe`, `publish`, `presence`";
// base64url of {"alg":"HS256","typ":"JWT"}, and of an HMAC-SHA256
const HEADER_B64_LENGTH = 36;
const SIGNATURE_B64_LENGTH = 43;

/** name.rs's check: empty, then too long (in bytes), then a character outside the set. */
function nameError(value, what, maxBytes, pattern, allowed) {
  if (value === "") return `${what} must not be empty`;
  if (encoder.encode(value).length > maxBytes) return `${what} is longer than ${maxBytes} bytes`;
  if (!pattern.test(value)) return `${what} may only contain ${allowed}`;
  return undefined;
}

const userError = (user) => nameError(user, "user id", USER_MAX_BYTES, /^[A-Za-z0-9_.:@-]+$/, "A-Z a-z 0-9 _ - . : @");

const ROOM_BASE = /^[A-Za-z0-9_.:-]+$/;
const ROOM_ALLOWED = "A-Z a-z 0-9 _ - . : (and one ~ before a user list)";
const LIMITED_ORDER = "a user-limited room lists its users once each, in ascending byte order (dm~alice,bob)";
const LIMITED_RESERVED = "a user-limited room lists only token users (not :… or anon:…)";
/** Whether `a` sorts before `b` by their UTF-8 bytes, as Rust compares strings. */
function utf8Less(a, b) {
  const [x, y] = [encoder.encode(a), encoder.encode(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i];
  return x.length < y.length;
}

/** name.rs's validate_room: a room name, or `<name>~<user>,<user>…` (users in byte order). */
function roomError(room) {
  if (encoder.encode(room).length > ROOM_NAME_MAX_BYTES) return `room name is longer than ${ROOM_NAME_MAX_BYTES} bytes`;
  const at = room.indexOf("~");
  if (at < 0) return nameError(room, "room name", ROOM_NAME_MAX_BYTES, ROOM_BASE, ROOM_ALLOWED);
  const base = nameError(room.slice(0, at), "room name", ROOM_NAME_MAX_BYTES, ROOM_BASE, ROOM_ALLOWED);
  if (base) return base;
  let previous;
  for (const user of room.slice(at + 1).split(",")) {
    const bad = userError(user);
    if (bad) return bad;
    if (user.startsWith(":") || user.startsWith("anon:")) return LIMITED_RESERVED;
    if (previous !== undefined && !utf8Less(previous, user)) return LIMITED_ORDER;
    previous = user;
  }
  return undefined;
}

/** name.rs's validate_pattern: `*`, a room name, or its prefix before a final `*` (which may stop
 * at a user-limited room's `~` or a comma). */
function patternError(pattern) {
  if (pattern === "*") return undefined;
  if (!pattern.endsWith("*")) return roomError(pattern);
  const prefix = pattern.slice(0, -1);
  if (prefix.endsWith("~") || prefix.endsWith(",")) {
    const base = prefix.slice(0, -1);
    return roomError(base) && nameError(base, "room name", ROOM_NAME_MAX_BYTES, ROOM_BASE, ROOM_ALLOWED);
  }
  return roomError(prefix);
}

/** The base64url length of `n` bytes, unpadded. */
const base64UrlLength = (n) => Math.ceil((n * 4) / 3);

/**
 * An HS256 token for `user`, signed with `secret` (ROOMCAST_SECRET's UTF-8 bytes). The same
 * arguments and output as tools/token.mjs's mintToken, asynchronous (WebCrypto); it refuses
 * what the edge would refuse, with the edge's text. `rooms` and `meta` are serialized once
 * (their `toJSON` included) and what was checked is what is signed.
 */
export async function mintToken({ secret, user, rooms, ttlSeconds = 3600, meta, now = Date.now() } = {}) {
  const refuse = (message) => {
    throw new TypeError(`mintToken: ${message}`);
  };
  if (typeof secret !== "string" || secret === "") refuse("secret is required");
  if (typeof user !== "string") refuse("user must be a string: 1-64 bytes of A-Z a-z 0-9 _ - . : @");
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) refuse("ttlSeconds must be a whole number of seconds above 0");
  if (!Number.isFinite(now) || now < 0) refuse("now must be a time in ms since the epoch");
  const badMeta = `${CLAIMS}meta must be a JSON object of at most ${META_MAX_BYTES} bytes`;
  if (meta !== undefined && (meta === null || typeof meta !== "object")) refuse(badMeta);
  const roomsJson = rooms === undefined ? undefined : JSON.stringify(rooms);
  const metaJson = meta === undefined ? undefined : JSON.stringify(meta);
  const iat = Math.floor(now / 1000);
  let payload = `{"sub":${JSON.stringify(user)},"exp":${iat + ttlSeconds},"iat":${iat}`;
  if (roomsJson !== undefined) payload += `,"rooms":${roomsJson}`;
  if (metaJson !== undefined) payload += `,"meta":${metaJson}`;
  payload += "}";
  const body = encoder.encode(payload);
  // In the edge's order: the token's length, its claims' shapes and rights, sub, meta; then
  // the patterns, which the edge's routing and /dev/token hold to the room name rules.
  if (HEADER_B64_LENGTH + 1 + base64UrlLength(body.length) + 1 + SIGNATURE_B64_LENGTH > MAX_TOKEN_BYTES) {
    refuse(`token is longer than ${MAX_TOKEN_BYTES} bytes`);
  }
  const granted = rooms === undefined ? {} : roomsJson === undefined ? null : JSON.parse(roomsJson);
  if (granted === null || typeof granted !== "object" || Array.isArray(granted)) {
    refuse(`${CLAIMS}rooms must be an object of room patterns to arrays of rights`);
  }
  for (const [pattern, rights] of Object.entries(granted)) {
    if (!Array.isArray(rights)) refuse(`${CLAIMS}the rights for ${pattern} must be an array`);
    for (const r of rights) {
      if (!RIGHTS.has(r)) refuse(`${CLAIMS}unknown variant \`${r}\`, expected one of ${KNOWN_RIGHTS} (in the rights for ${pattern})`);
    }
  }
  const badUser = userError(user);
  if (badUser) refuse(`${CLAIMS}sub: ${badUser}`);
  if (user.startsWith(":") || user.startsWith("anon:")) refuse(`${CLAIMS}sub: reserved (starts with ':' or 'anon:')`);
  if (meta !== undefined && (metaJson === undefined || !metaJson.startsWith("{") || encoder.encode(metaJson).length > META_MAX_BYTES)) {
    refuse(badMeta);
  }
  for (const pattern of Object.keys(granted)) {
    const bad = patternError(pattern);
    if (bad) refuse(`room pattern: ${bad} (${JSON.stringify(pattern)})`);
  }
  const head = toBase64Url(encoder.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const key = cachedKey(`token:${secret}`, encoder.encode(secret));
  const sig = await hmac(key, encoder.encode(`${head}.${toBase64Url(body)}`));
  return `${head}.${toBase64Url(body)}.${toBase64Url(sig)}`;
}

// --- the HTTP API --------------------------------------------------------------------------------

// The refusal table's codes by status, for a refusal that came without the edge's error body (a
// proxy's or the platform's). A 5xx without one is not the room's "storage": "http_error".
const STATUS_CODES = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "bad_request",
  411: "bad_request",
  413: "too_large",
  429: "rate_limited",
};

/** Retry-After (whole seconds, or an HTTP date) in seconds; undefined when absent or unreadable. */
function retryAfterSeconds(value, now) {
  if (value == null || value === "") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

const isCount = (n) => Number.isSafeInteger(n) && n >= 0;

function checkRoom(room) {
  if (typeof room !== "string" || !ROOM_NAME.test(room)) {
    throw new TypeError(
      `roomcast: invalid room name ${JSON.stringify(String(room).slice(0, 140))}: 1-128 characters of A-Z a-z 0-9 _ - . :`,
    );
  }
}

function checkId(id, where) {
  if (id === undefined) return;
  const bytes = typeof id === "string" ? encoder.encode(id).length : 0;
  if (bytes < 1 || bytes > 128) throw new TypeError(`roomcast: ${where}: id must be a string of 1-128 bytes`);
}

function message(data, id, where) {
  if (data === undefined) throw new TypeError(`roomcast: ${where}: data is required (null is a value, undefined is not)`);
  checkId(id, where);
  return id === undefined ? { data } : { data, id };
}

/** A client of the backend HTTP API. */
export function createClient({ url, apiKey, fetch: fetchImpl, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  if (typeof url !== "string" || url === "") throw new TypeError("createClient: url is required (the edge's origin, https://…)");
  if (typeof apiKey !== "string" || apiKey === "") throw new TypeError("createClient: apiKey is required (ROOMCAST_API_KEY)");
  if (fetchImpl !== undefined && typeof fetchImpl !== "function") throw new TypeError("createClient: fetch must be a function");
  if (!(timeoutMs > 0)) throw new TypeError("createClient: timeoutMs must be above 0 (Infinity: no timeout)");
  const base = new URL(url);
  if (base.protocol === "ws:") base.protocol = "http:";
  if (base.protocol === "wss:") base.protocol = "https:";
  if (base.protocol !== "http:" && base.protocol !== "https:")
    throw new TypeError(`createClient: url must be http(s), got ${base.protocol}`);
  const prefix = `${base.origin}${base.pathname.replace(/\/$/, "")}`;
  // Looked up per call (and called on globalThis), so a fetch installed later, or a Worker's
  // fetch that must not be detached from its global, works.
  const doFetch = fetchImpl ?? ((input, init) => globalThis.fetch(input, init));

  async function exchange(method, path, body, signal) {
    const what = `${method} ${path}`;
    const headers = { authorization: `Bearer ${apiKey}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response, text;
    try {
      response = await doFetch(`${prefix}${path}`, { method, headers, body, signal });
      text = await response.text();
    } catch (e) {
      throw new RoomcastError("network", `roomcast: ${what}: ${e?.message ?? e}`, { status: 0, cause: e });
    }
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (response.status < 200 || response.status > 299) {
      const error = json?.error;
      const code = typeof error?.code === "string" ? error.code : (STATUS_CODES[response.status] ?? "http_error");
      const detail =
        typeof error?.message === "string" ? error.message : text.slice(0, 200) || response.statusText || `HTTP ${response.status}`;
      const retryAfter = retryAfterSeconds(response.headers.get("retry-after"), Date.now());
      throw new RoomcastError(code, `roomcast: ${what}: ${response.status} ${detail}`, { status: response.status, retryAfter });
    }
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      throw new RoomcastError("bad_response", `roomcast: ${what}: the answer is not a JSON object: ${text.slice(0, 200)}`, {
        status: response.status,
      });
    }
    return json;
  }

  /** One call; settles within timeoutMs even with a fetch that ignores its signal. */
  async function request(method, room, endpoint, { query, body, at } = {}) {
    if (at === undefined) checkRoom(room);
    const search = query ? query.toString() : "";
    const path = at ?? `/rooms/${room}/${endpoint}${search ? `?${search}` : ""}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const controller = new AbortController();
    let timer;
    const timeout = new Promise((_, reject) => {
      if (timeoutMs === Infinity) return;
      timer = setTimeout(() => {
        reject(new RoomcastError("timeout", `roomcast: ${method} ${path}: no answer within ${timeoutMs} ms`, { status: 0 }));
        controller.abort();
      }, timeoutMs);
    });
    try {
      return await Promise.race([exchange(method, path, payload, controller.signal), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    async publish(room, data, { id } = {}) {
      return request("POST", room, "messages", { body: message(data, id, "publish") });
    },
    async publishBatch(room, messages) {
      if (!Array.isArray(messages) || messages.length === 0)
        throw new TypeError("roomcast: publishBatch: messages must be a non-empty array of { data, id? }");
      const body = messages.map((m, i) => {
        if (m === null || typeof m !== "object") throw new TypeError(`roomcast: publishBatch: item ${i} must be { data, id? }`);
        return message(m.data, m.id, `publishBatch item ${i}`);
      });
      return request("POST", room, "messages", { body });
    },
    async history(room, { since, before, limit } = {}) {
      const query = new URLSearchParams();
      for (const [name, value] of [
        ["since", since],
        ["before", before],
        ["limit", limit],
      ]) {
        if (value === undefined) continue;
        if (!isCount(value)) throw new TypeError(`roomcast: history: ${name} must be a whole number from 0 to 2^53 - 1`);
        query.set(name, String(value));
      }
      if (since !== undefined && before !== undefined) throw new TypeError("roomcast: history: since and before cannot be used together");
      return request("GET", room, "history", { query });
    },
    async presence(room) {
      return request("GET", room, "presence");
    },
    async stats(room) {
      return request("GET", room, "stats");
    },
    async kick(room, { user, banSeconds, reason } = {}) {
      if (typeof user !== "string" || user === "") throw new TypeError("roomcast: kick: user is required");
      if (banSeconds !== undefined && !isCount(banSeconds)) throw new TypeError("roomcast: kick: banSeconds must be a whole number");
      if (reason !== undefined && typeof reason !== "string") throw new TypeError("roomcast: kick: reason must be a string");
      const body = { user };
      if (banSeconds !== undefined) body.banSeconds = banSeconds;
      if (reason !== undefined) body.reason = reason;
      return request("POST", room, "kick", { body });
    },
    /** `DELETE /sessions/:user`: closes every session socket of the user (4411). */
    async closeSession(user) {
      if (typeof user !== "string" || !/^[A-Za-z0-9_.:@-]{1,64}$/.test(user)) {
        throw new TypeError("roomcast: closeSession: user must be a user id (1-64 of A-Z a-z 0-9 _ - . : @)");
      }
      return request("DELETE", undefined, undefined, { at: `/sessions/${user}` });
    },
    async requeueWebhooks(room) {
      return request("POST", room, "webhooks/requeue");
    },
    async deleteHistory(room) {
      return request("DELETE", room, "history");
    },
  };
}

// --- webhooks ------------------------------------------------------------------------------------

/** A header's value from a Headers object or a plain object (Node's req.headers), by lower-case name. */
function headerValue(headers, name) {
  if (headers == null || typeof headers !== "object") return undefined;
  if (typeof headers.get === "function") return headers.get(name) ?? undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? value.join(" ") : value == null ? undefined : String(value);
  }
  return undefined;
}

function webhookKey(secret) {
  if (typeof secret !== "string") throw new TypeError("verifyWebhook: secret must be a string (whsec_ + base64)");
  const text = secret.startsWith(WHSEC) ? secret.slice(WHSEC.length) : secret;
  const bytes = fromBase64(text);
  if (!bytes || bytes.length === 0) throw new TypeError("verifyWebhook: secret must be whsec_ + base64 (the whsec_ prefix is optional)");
  return cachedKey(`webhook:${text}`, bytes);
}

/**
 * Checks a webhook request as the Standard Webhooks scheme says, then parses its body. Rejects
 * with WebhookVerificationError when a header is missing, the timestamp is outside the tolerance
 * (either direction), no `v1` signature matches, or the signed body is not a webhook payload;
 * with a TypeError for a secret that is not base64 or a body that is not a string or bytes.
 */
export async function verifyWebhook(body, headers, secret, { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now = Date.now() } = {}) {
  let bodyBytes;
  if (typeof body === "string") bodyBytes = encoder.encode(body);
  else if (body instanceof Uint8Array) bodyBytes = body;
  else if (body instanceof ArrayBuffer) bodyBytes = new Uint8Array(body);
  else throw new TypeError("verifyWebhook: body must be the raw request body, a string or bytes (not parsed JSON)");
  if (!(toleranceSeconds >= 0)) throw new TypeError("verifyWebhook: toleranceSeconds must be 0 or more");
  const key = webhookKey(secret);
  const id = headerValue(headers, "webhook-id");
  const timestamp = headerValue(headers, "webhook-timestamp");
  const signatures = headerValue(headers, "webhook-signature");
  for (const [name, value] of [
    ["webhook-id", id],
    ["webhook-timestamp", timestamp],
    ["webhook-signature", signatures],
  ]) {
    if (!value) throw new WebhookVerificationError("missing_header", `missing header ${name}`);
  }
  if (!/^\d{1,15}$/.test(timestamp.trim()))
    throw new WebhookVerificationError("bad_timestamp", "webhook-timestamp is not whole seconds since the epoch");
  const seconds = Number(timestamp.trim());
  const nowSeconds = Math.floor(now / 1000);
  if (nowSeconds - seconds > toleranceSeconds)
    throw new WebhookVerificationError(
      "timestamp_too_old",
      `webhook-timestamp is ${nowSeconds - seconds} s old (tolerance ${toleranceSeconds} s)`,
    );
  if (seconds - nowSeconds > toleranceSeconds)
    throw new WebhookVerificationError(
      "timestamp_too_new",
      `webhook-timestamp is ${seconds - nowSeconds} s ahead (tolerance ${toleranceSeconds} s)`,
    );
  // Signed content: `${id}.${timestamp}.` then the body's bytes exactly as received (the
  // timestamp as a number, as the Standard Webhooks libraries write it).
  const prefix = encoder.encode(`${id}.${seconds}.`);
  const signed = new Uint8Array(prefix.length + bodyBytes.length);
  signed.set(prefix);
  signed.set(bodyBytes, prefix.length);
  const expected = await hmac(key, signed);
  // Space-separated `version,base64` entries; only v1 (HMAC-SHA256) is ours. A header repeated
  // and joined by ", " (fetch's Headers, Node) leaves a comma on all but the last: dropped.
  let matched = false;
  for (const entry of signatures.split(/\s+/)) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const given = fromBase64(entry.slice(comma + 1).replace(/,$/, ""));
    if (given && timingSafeEqual(given, expected)) matched = true; // no early exit: every entry is compared
  }
  if (!matched)
    throw new WebhookVerificationError(
      "bad_signature",
      "no webhook-signature matches the body (wrong secret, or the body or headers were changed)",
    );
  let payload;
  try {
    payload = JSON.parse(decoder.decode(bodyBytes));
  } catch {
    throw new WebhookVerificationError("bad_body", "the signed body is not JSON text");
  }
  if (payload === null || typeof payload !== "object" || !Array.isArray(payload.events)) {
    throw new WebhookVerificationError("bad_body", 'the signed body is not {"events":[…]}');
  }
  return payload;
}
