// The SDK's reading of server frames (sdk/js/shapes.js) against the wire format: every server frame
// type in docs/protocol.schema.json has a shape, and every golden server frame
// (tests/golden/frames.json) passes its type's. A server frame type added to the protocol without
// a shape here fails this test rather than being ignored silently by the SDK.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { SHAPES } from "../js/shapes.js";

const ROOT = new URL("../../", import.meta.url);
const schema = JSON.parse(readFileSync(new URL("docs/protocol.schema.json", ROOT), "utf8"));
const golden = JSON.parse(readFileSync(new URL("tests/golden/frames.json", ROOT), "utf8")).frames;

/**
 * The frame types one of the schema's unions (`serverFrame`, `clientFrame`, `sessionServerFrame`)
 * names; a session's room frames (an `allOf` of a room frame and its `room`) name none of their own.
 */
function schemaTypes(union) {
  return schema.$defs[union].oneOf.flatMap((r) => {
    const d = schema.$defs[r.$ref.split("/").pop()];
    if (d.allOf) return [];
    return [d.properties?.type?.const ?? d.oneOf[0].properties.type.const];
  });
}

test("every server frame type of the schema has a shape", () => {
  const types = [...new Set([...schemaTypes("serverFrame"), ...schemaTypes("sessionServerFrame")])];
  assert.ok(types.length >= 10, `${types.length} server frame types`);
  // `input` (a shared terminal's keys) goes only to the connection that runs the terminal, which
  // is the roomcast CLI, never a page: the SDK sends it (sendInput) and ignores it coming in.
  const missing = types.filter((t) => typeof SHAPES[t] !== "function" && t !== "input");
  assert.deepEqual(missing, [], "server frame types the SDK would ignore silently");
  // and no shape for a type the server does not send (a typo would never match a frame)
  assert.deepEqual(
    Object.keys(SHAPES).filter((t) => !types.includes(t)),
    [],
  );
});

test("every golden server frame passes its shape", () => {
  const server = golden.filter((g) => g.direction === "server" || g.direction === "session-server");
  assert.ok(server.length >= 25, `${server.length} golden server frames`);
  const seen = new Set();
  for (const g of server) {
    const frame = JSON.parse(g.text);
    seen.add(frame.type);
    if (frame.type === "input") continue; // not read by the SDK (above)
    const shape = SHAPES[frame.type];
    assert.ok(shape, `${g.name}: no shape for ${frame.type}`);
    assert.equal(shape(frame), true, `${g.name}: ${g.text}`);
    seen.add(frame.type);
  }
  const types = [...new Set([...schemaTypes("serverFrame"), ...schemaTypes("sessionServerFrame")])];
  assert.deepEqual([...seen].sort(), types.sort(), "the golden file has a frame of every server type");
});

test("shapes refuse frames missing what the SDK reads", () => {
  const welcome = JSON.parse(golden.find((g) => g.direction === "server" && JSON.parse(g.text).type === "welcome").text);
  const bad = [
    { ...welcome, seq: "4" },
    { ...welcome, members: [{}] },
    { ...welcome, epoch: 1 },
    { ...welcome, expires: -1 },
    { type: "message", seq: 2 ** 53, from: "a", user: "b" },
    { type: "message", seq: 1, from: "a" },
    { type: "ack", seq: 1 },
    { type: "ack", id: "m", seq: -1 },
    { type: "error" },
    { type: "presence", event: "join" },
    { type: "direct", from: "a" },
    { type: "broadcast", user: "b" },
    { type: "history", messages: [] },
    { type: "refreshed" },
  ];
  for (const f of bad) assert.equal(SHAPES[f.type](f), false, JSON.stringify(f));
  assert.equal(SHAPES.constructor, undefined, "no prototype: a frame type such as constructor has no shape");
});
