#!/usr/bin/env node
// Mints roomcast access tokens: HS256 JWTs signed with ROOMCAST_SECRET, for this repository's
// tools and tests. A backend uses `mintToken` from the published `roomcast/server` (the same
// tokens, byte for byte: sdk/test/server.test.mjs); `roomcast_protocol::token::mint` does the
// same in Rust.
//
//   import { mintToken } from "./tools/token.mjs";
//   const token = mintToken({ secret, user: "alice", rooms: { "chat:*": ["subscribe", "publish", "presence"] },
//                             ttlSeconds: 3600, meta: { name: "Alice" } });
//
// CLI (npm run token -- …): --user alice --room 'chat:*' --rights subscribe,publish,presence
// --ttl 1h [--meta '{"name":"Alice"}'] [--secret S]. The secret defaults to $ROOMCAST_SECRET,
// then to the one in .dev.vars.
import { createHmac } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const RIGHTS = new Set(["subscribe", "publish", "presence", "input"]);
const b64url = (data) => Buffer.from(data).toString("base64url");

/**
 * @param {object} o
 * @param {string} o.secret    ROOMCAST_SECRET
 * @param {string} o.user      the user id (`sub`): 1-64 of A-Z a-z 0-9 _ - . : @, not starting with
 *   ":" or "anon:" (reserved for the backend's `:api` and anonymous users; the edge refuses them)
 * @param {Record<string, ("subscribe"|"publish"|"presence")[]>} o.rooms  patterns to rights:
 *   an exact room name, a prefix ending in `*` (`chat:*` matches `chat:lobby`, not `chatroom`), or `*`
 * @param {number} [o.ttlSeconds=3600]  lifetime; `exp` is required by the server
 * @param {object} [o.meta]    presence metadata shown to others (at most 1,024 bytes of JSON)
 * @param {number} [o.now]     ms since the epoch (for tests)
 * @returns {string} the token
 */
export function mintToken({ secret, user, rooms, ttlSeconds = 3600, meta, now = Date.now() }) {
  if (!secret) throw new Error("mintToken: secret is required");
  if (!/^[A-Za-z0-9_.:@-]{1,64}$/.test(user ?? "")) throw new Error("mintToken: user must be 1-64 of A-Z a-z 0-9 _ - . : @");
  if (isReservedUser(user)) throw new Error(`mintToken: user ${user} is reserved (ids starting with ":" or "anon:" are the server's)`);
  for (const [pattern, rights] of Object.entries(rooms ?? {})) {
    for (const r of rights) if (!RIGHTS.has(r)) throw new Error(`mintToken: unknown right ${r} for ${pattern}`);
  }
  const iat = Math.floor(now / 1000);
  const claims = { sub: user, exp: iat + ttlSeconds, iat, rooms };
  if (meta !== undefined) claims.meta = meta;
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Whether a user id is reserved: `:api` and anything else starting with ":", and `anon:<name>`. */
export function isReservedUser(user) {
  return user.startsWith(":") || user.startsWith("anon:");
}

/** Reads a value from the project's .dev.vars (local development only). */
export function devVar(name) {
  const file = join(dirname(fileURLToPath(import.meta.url)), "..", ".dev.vars");
  if (!existsSync(file)) return undefined;
  const m = readFileSync(file, "utf8").match(new RegExp(`^${name}="?([^"\\n]*)"?`, "m"));
  return m?.[1];
}

function parseTtl(text) {
  const m = /^(\d+)([smhd]?)$/.exec(text);
  if (!m) throw new Error(`--ttl: expected a number with s, m, h or d, got ${text}`);
  return Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith("--")) throw new Error(`unexpected argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
    i++;
  }
  try {
    if (!args.user || !args.room)
      throw new Error(
        "usage: npm run token -- --user alice --room 'chat:*' [--rights subscribe,publish,presence] [--ttl 1h] [--meta JSON] [--secret S]",
      );
    const secret = args.secret ?? process.env.ROOMCAST_SECRET ?? devVar("ROOMCAST_SECRET");
    if (!secret) throw new Error("no secret: pass --secret, set ROOMCAST_SECRET, or run `npm run setup` for a .dev.vars");
    const rights = (args.rights ?? "subscribe,publish,presence").split(",").map((r) => r.trim());
    const token = mintToken({
      secret,
      user: args.user,
      rooms: { [args.room]: rights },
      ttlSeconds: parseTtl(args.ttl ?? "1h"),
      meta: args.meta ? JSON.parse(args.meta) : undefined,
    });
    process.stdout.write(`${token}\n`);
  } catch (e) {
    process.stderr.write(`token: ${e.message}\n`);
    process.exit(2);
  }
}
