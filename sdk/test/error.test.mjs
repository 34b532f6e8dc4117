// One error shape for the whole package: `roomcast` (sdk/js/error.js, bundled into dist) and
// `roomcast/server` (server/index.mjs, which must import nothing and so holds a copy) define the
// same RoomcastError, by the same text, with the same constructor.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { RoomcastError as BrowserError } from "../js/error.js";
import { RoomcastError as ServerError } from "../server/index.mjs";

/** The class's text, from its doc comment to the line that keeps its name. */
function classText(file) {
  const source = readFileSync(new URL(file, import.meta.url), "utf8");
  const start = source.indexOf("/**\n * Why a call failed");
  const end = source.indexOf('Object.defineProperty(RoomcastError, "name"');
  assert.ok(start >= 0 && end > start, `${file} defines RoomcastError`);
  return source.slice(start, source.indexOf("\n", end));
}

test("roomcast and roomcast/server define RoomcastError by the same text", () => {
  assert.equal(classText("../server/index.mjs"), classText("../js/error.js"));
});

test("one constructor: (code, message, { cause, ...fields }), fields set only when given", () => {
  for (const RoomcastError of [BrowserError, ServerError]) {
    const cause = new Error("socket");
    const e = new RoomcastError("rate_limited", "slow down", { status: 429, retryAfter: 3, closeCode: undefined, cause });
    assert.ok(e instanceof Error && e instanceof RoomcastError);
    assert.deepEqual(
      [e.name, e.code, e.message, e.status, e.retryAfter, e.cause],
      ["RoomcastError", "rate_limited", "slow down", 429, 3, cause],
    );
    assert.ok(!("closeCode" in e), "an undefined field is not set");
    const bare = new RoomcastError("closed");
    assert.deepEqual([bare.message, Object.keys(bare).sort()], ["closed", ["code", "name"]]);
    assert.equal(RoomcastError.name, "RoomcastError");
  }
});
