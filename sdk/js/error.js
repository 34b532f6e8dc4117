// The one error shape of the package: `roomcast` rejects with it, and `roomcast/server` defines
// the same class (server/index.mjs must import nothing, so it holds a copy; sdk/test/error.test.mjs
// checks the two are the same text).

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
