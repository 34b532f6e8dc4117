// The wire format's JSON Schema (docs/protocol.schema.json) against every frame the project writes:
// the golden frames (tests/golden/frames.json, whose Rust builders protocol/tests/golden.rs checks
// byte for byte), the frames tests/harness.mjs's Client sends, and the frames the SDK sends (all of
// them built by the wasm client machine's encoder, driven here through the SDK's JavaScript API,
// each against its golden bytes). No server or browser needed: `node --test tests/unit/`.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { register } from "node:module";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import { Client } from "../harness.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const schema = JSON.parse(readFileSync(join(ROOT, "docs/protocol.schema.json"), "utf8"));
const golden = JSON.parse(readFileSync(join(ROOT, "tests/golden/frames.json"), "utf8")).frames;

const ajv = new Ajv2020({ strict: true, allErrors: true });
ajv.addSchema(schema);
const validators = {
  client: ajv.getSchema(`${schema.$id}#/$defs/clientFrame`),
  server: ajv.getSchema(`${schema.$id}#/$defs/serverFrame`),
  any: ajv.getSchema(schema.$id),
  "session-client": ajv.getSchema(`${schema.$id}#/$defs/sessionClientFrame`),
  "session-server": ajv.getSchema(`${schema.$id}#/$defs/sessionServerFrame`),
};

/** Asserts that `text` is one frame of `direction` the schema accepts. */
function assertValid(direction, text, what) {
  const frame = JSON.parse(text);
  const validate = validators[direction];
  assert.ok(validate(frame), `${what}: ${text}\n${ajv.errorsText(validate.errors, { separator: "\n" })}`);
  assert.ok(validators.any(frame), `${what}: the root schema accepts it too`);
}

function assertInvalid(direction, frame, what) {
  assert.equal(validators[direction](frame), false, `${what} should be refused: ${JSON.stringify(frame)}`);
}

test("the schema compiles in strict mode and names every frame type", () => {
  const types = (def) =>
    schema.$defs[def].oneOf.map((r) => {
      const d = schema.$defs[r.$ref.split("/").pop()];
      return d.properties?.type?.const ?? d.oneOf[0].properties.type.const;
    });
  assert.deepEqual(types("clientFrame").sort(), [
    "broadcast",
    "direct",
    "history",
    "input",
    "ping",
    "presence",
    "publish",
    "read",
    "refresh",
  ]);
  assert.deepEqual(types("serverFrame").sort(), [
    "ack",
    "broadcast",
    "direct",
    "error",
    "history",
    "input",
    "mark",
    "message",
    "pong",
    "presence",
    "refreshed",
    "welcome",
  ]);
});

test("every golden frame validates against the schema", () => {
  assert.ok(golden.length >= 30, `only ${golden.length} golden frames`);
  const seen = new Set();
  for (const g of golden) {
    assertValid(g.direction, g.text, g.name);
    seen.add(`${g.direction} ${JSON.parse(g.text).type}`);
  }
  for (const needed of [
    "client publish",
    "client direct",
    "client input",
    "client ping",
    "client refresh",
    "client history",
    "client broadcast",
    "client presence",
    "server welcome",
    "server message",
    "server ack",
    "server error",
    "server direct",
    "server input",
    "server presence",
    "server pong",
    "server refreshed",
    "server history",
    "server broadcast",
  ]) {
    assert.ok(seen.has(needed), `no golden frame for ${needed}`);
  }
});

test("the schema refuses frames that break the protocol", () => {
  const welcome = JSON.parse(golden.find((g) => JSON.parse(g.text).type === "welcome").text);
  const without = (o, key) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));
  for (const key of ["epoch", "seq", "clientId", "user", "members", "heartbeat", "limits"]) {
    assertInvalid("server", without(welcome, key), `a welcome without ${key}`);
  }
  assertInvalid("server", { ...welcome, heartbeat: { interval: 500, timeout: 60000 } }, "a heartbeat interval under 1 s");
  assertInvalid("server", { ...welcome, limits: without(welcome.limits, "maxFrameBytes") }, "limits without maxFrameBytes");
  assertInvalid("server", { ...welcome, resume: { status: "recovered" } }, "a recovered resume without replayed");
  assertInvalid("server", { ...welcome, seq: 2 ** 53 }, "a seq at 2^53");
  assertInvalid("client", { type: "publish", id: "a" }, "a publish without data");
  assertInvalid("client", { type: "publish", id: "", data: 1 }, "a publish with an empty id");
  assertInvalid("client", { type: "publish", id: "x".repeat(129), data: 1 }, "a publish with a 129-byte id");
  assertInvalid("client", { type: "publish", id: 5, data: 1 }, "a publish with a number id");
  assertInvalid("client", { type: "direct", id: "d", to: { user: "b", clientId: "c" }, data: 1 }, "a direct message with two targets");
  assertInvalid("client", { type: "direct", id: "d", to: {}, data: 1 }, "a direct message with no target");
  assertInvalid("client", { type: "refresh" }, "a refresh without token");
  assertInvalid("client", { type: "history", id: "h", before: 3, since: 1 }, "a history request with both before and since");
  assertInvalid("client", { type: "history", limit: 3 }, "a history request without id");
  assertInvalid("client", { type: "broadcast", id: "b" }, "a broadcast without data");
  assertInvalid("client", { type: "presence", id: "p", meta: [1] }, "a presence change whose meta is not an object");
  assertInvalid(
    "server",
    { type: "history", id: "h", messages: [{ type: "message", seq: 1 }], more: false },
    "a history page with a bad message",
  );
  assertInvalid("server", { type: "history", id: "h", messages: [] }, "a history page without more");
  assertInvalid("server", { ...welcome, rewind: {} }, "a rewind without replayed");
  assertInvalid("client", { type: "dance" }, "an unknown client frame type");
  assertInvalid("server", { type: "ack", id: "m", seq: 3, delivered: 1 }, "an ack with both seq and delivered");
  assertInvalid("server", { type: "ack", id: "m", delivered: 0 }, "a direct ack that delivered to nobody (that is no_recipient)");
  assertInvalid("server", { type: "message", seq: 1, from: "c", user: "u", ts: 1 }, "a message without data");
  assertInvalid("server", { type: "message", seq: 0, from: "c", user: "u", data: 1, ts: 1 }, "a message with seq 0");
  assertInvalid("server", { type: "error", code: 5, message: "" }, "an error code that is not a string");
  assertInvalid("server", { type: "error", code: "Not A Code", message: "" }, "an error code that is not snake_case");
  assertInvalid("server", { type: "presence", event: "", member: { user: "u", connections: 1 } }, "an empty presence event");
  assertInvalid("server", { type: "direct", id: "d", to: { user: "bob" }, data: 1 }, "a client's direct frame as a server frame");
  // Forward compatibility: unknown fields are allowed, required ones are still required.
  assertValid("server", JSON.stringify({ ...welcome, region: "weur" }), "a welcome with a field from a newer server");
  assertValid("client", '{"type":"ping","sentAt":1}', "a ping with an extra field");
  // The open lists (PROTOCOL.md, Forward compatibility): a value this version does not send
  // validates, in room frames and in session frames alike.
  const joined = { ...welcome, type: "joined", room: "chat:lobby" };
  for (const [direction, frame, what] of [
    ["server", { type: "error", code: "teapot", message: "" }, "an error code this version does not send"],
    ["server", { type: "error", id: "m1", code: "quota_exceeded", message: "x" }, "an unknown error code with an id"],
    ["server", { type: "presence", event: "wave", member: { user: "u", connections: 1 } }, "an unknown presence event"],
    ["server", { ...welcome, resume: { status: "not_recovered", reason: "moved", since: 3 } }, "an unknown resume reason"],
    ["session-server", { ...joined, resume: { status: "not_recovered", reason: "moved", since: 3 } }, "a session's unknown resume reason"],
  ]) {
    assertValid(direction, JSON.stringify(frame), what);
  }
  // and the values this version sends are listed, so a reader of the schema sees them
  for (const [def, known] of [
    ["errorCode", "backpressure"],
    ["presenceEvent", "leave"],
    ["resumeReason", "unavailable"],
  ]) {
    assert.ok(schema.$defs[def].anyOf[0].enum.includes(known), `${def} lists ${known}`);
  }
});

test("the frame examples in docs/PROTOCOL.md validate", () => {
  // Every JSON example under "### Client → server" and "### Server → client" (a block, or each of
  // its lines) that parses and has a type is a frame of that direction.
  const doc = readFileSync(join(ROOT, "docs/PROTOCOL.md"), "utf8");
  const section = (from, to) => doc.slice(doc.indexOf(from), doc.indexOf(to, doc.indexOf(from)));
  const parts = { client: section("### Client → server", "### Server → client"), server: section("### Server → client", "\n## ") };
  let checked = 0;
  for (const [direction, text] of Object.entries(parts)) {
    assert.ok(text.length > 100, `docs/PROTOCOL.md has a ${direction} frames section`);
    const blocks = [...text.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]);
    const inline = [...text.matchAll(/`(\{"type":[^`]*\})`/g)].map((m) => m[1]);
    for (const block of blocks) {
      let frames;
      try {
        frames = [JSON.parse(block)];
      } catch {
        frames = block
          .split("\n")
          .filter(Boolean)
          .map((l) => {
            try {
              return JSON.parse(l);
            } catch {
              return undefined;
            }
          });
      }
      for (const f of frames.filter((f) => typeof f?.type === "string")) {
        assertValid(direction, JSON.stringify(f), "docs/PROTOCOL.md example");
        checked++;
      }
    }
    // Frames quoted in the prose may be answers of the other direction: the root schema takes both.
    // (Quotes with placeholders, such as <ms> or …, are not JSON and are skipped.)
    for (const quoted of inline) {
      let f;
      try {
        f = JSON.parse(quoted);
      } catch {
        continue;
      }
      assert.ok(validators.any(f), `docs/PROTOCOL.md quotes ${quoted}\n${ajv.errorsText(validators.any.errors)}`);
      checked++;
    }
  }
  assert.ok(checked >= 15, `only ${checked} examples found`);
});

// ---- tests/harness.mjs --------------------------------------------------------------------------

/** The part of a `ws` WebSocket that the harness's Client uses; records what is sent. */
class FakeWs extends EventEmitter {
  static OPEN = 1;
  readyState = 1;
  sent = [];
  send(text) {
    this.sent.push(text);
  }
  close() {
    this.readyState = 3;
    this.emit("close", 1000, Buffer.from(""));
  }
}

test("frames the test harness's Client sends validate, and it reads coalesced golden frames", async () => {
  const ws = new FakeWs();
  const client = new Client(ws);
  // Every golden server frame in one coalesced message, as the room may send them.
  const server = golden.filter((g) => g.direction === "server");
  ws.emit("message", Buffer.from(server.map((g) => g.text).join("\n")));
  assert.deepEqual(
    client.frames,
    server.map((g) => JSON.parse(g.text)),
  );

  await client.close();

  const ws2 = new FakeWs();
  const sender = new Client(ws2);
  for (const g of golden.filter((g) => g.source?.fn === "tests/harness.mjs Client.publish")) {
    const answer = sender.publish(g.source.id, JSON.parse(g.source.data));
    assert.equal(ws2.sent.at(-1), g.text, `${g.name}: the harness writes exactly the golden bytes`);
    ws2.emit("message", Buffer.from(JSON.stringify({ type: "ack", id: g.source.id, seq: 99 })));
    assert.equal((await answer).seq, 99);
  }
  // The other frames the e2e tests send through the harness (tests/e2e/*.test.mjs).
  sender.send({ type: "direct", id: "d-1", to: { user: "bob" }, data: { text: "psst" } });
  sender.send({ type: "direct", id: "d-2", to: { clientId: "tab-2" }, data: null });
  sender.send({ type: "refresh", token: "a.b.c" });
  sender.raw('{"type":"ping"}'); // Client.connect's pinger
  for (const text of ws2.sent) assertValid("client", text, "a harness frame");
  assert.equal(ws2.sent.length, 5);
  await sender.close();
});

// ---- the SDK ------------------------------------------------------------------------------------

test("no JavaScript file of the SDK builds a client frame: the wasm client machine's encoder does", () => {
  // Client frame types, from the schema; the only mention allowed is the logger's redaction of the
  // token in a refresh frame (it reads frames, it does not build them).
  const types = schema.$defs.clientFrame.oneOf.map((r) => {
    const d = schema.$defs[r.$ref.split("/").pop()];
    return d.properties?.type?.const ?? d.oneOf[0].properties.type.const;
  });
  for (const file of readdirSync(join(ROOT, "sdk/js"))) {
    const source = readFileSync(join(ROOT, "sdk/js", file), "utf8").replace(/\/\/.*$/gm, "");
    for (const type of types) {
      const built = [...source.matchAll(new RegExp(`type\\W{1,4}${type}\\b`, "g"))].map((m) => source.slice(m.index - 20, m.index + 40));
      const allowed = type === "refresh" ? built.filter((b) => !b.includes("(not logged)") && !b.includes("startsWith")) : built;
      assert.deepEqual(allowed, [], `sdk/js/${file} builds ${type} frames`);
    }
    assert.doesNotMatch(
      source,
      /JSON\.stringify\(\{\s*type\b|\{\s*"type"\s*:\s*"?\$\{/,
      `sdk/js/${file} builds frames with a variable type`,
    );
  }
});

const WASM = join(ROOT, "sdk/pkg/roomcast_sdk.wasm.txt");

/** Why the built wasm cannot stand for the sources, or "" when it can. */
function wasmStale() {
  if (!existsSync(WASM)) return "the SDK's wasm is not built (npm run build:sdk)";
  const built = statSync(WASM).mtimeMs;
  const sources = ["sdk/src", "protocol/src/client"].flatMap((d) => readdirSync(join(ROOT, d)).map((f) => join(ROOT, d, f)));
  sources.push(join(ROOT, "protocol/src/close.rs"), join(ROOT, "protocol/src/lib.rs"));
  const newer = sources.filter((f) => statSync(f).mtimeMs > built);
  return newer.length ? `the SDK's wasm is older than ${newer.map((f) => f.slice(ROOT.length + 1)).join(", ")} (npm run build:sdk)` : "";
}

/** A browser WebSocket stand-in: records the instances the SDK opens and what they send. */
class FakeWebSocket {
  static instances = [];
  readyState = 1;
  sent = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    FakeWebSocket.instances.push(this);
  }
  send(text) {
    this.sent.push(text);
  }
  close(code = 1000, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** A message from the server. */
  receive(text) {
    this.onmessage?.({ data: text });
  }
}

const until = async (cond, what, ms = 5_000) => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** The SDK from its sources (sdk/js, with the built wasm) in Node, or why it cannot run. */
async function sdk() {
  const stale = wasmStale();
  if (stale) return { stale };
  // host.js imports the wasm packed as text (esbuild's text loader in the build); Node gets the
  // same text through a load hook.
  register(
    `data:text/javascript,${encodeURIComponent(`
    import { readFileSync } from "node:fs";
    export async function load(url, context, next) {
      if (!url.endsWith(".wasm.txt")) return next(url, context);
      const text = readFileSync(new URL(url), "latin1");
      return { format: "module", shortCircuit: true,
        source: "export default " + JSON.stringify(text) + ";" };
    }`)}`,
    import.meta.url,
  );
  return import(pathToFileURL(join(ROOT, "sdk/js/index.js")).href);
}

/** A room on a fake socket, opened by a golden welcome; `sent()` is what it sent since. */
async function openRoom(connect, options) {
  FakeWebSocket.instances = [];
  const room = connect({ url: "http://127.0.0.1:9", room: "chat", WebSocket: FakeWebSocket, ...options });
  await until(() => FakeWebSocket.instances.length === 1, "the SDK to open a socket");
  const ws = FakeWebSocket.instances[0];
  const welcome = JSON.parse(golden.find((g) => g.name.startsWith("welcome, fresh")).text);
  ws.receive(JSON.stringify({ ...welcome, clientId: room.clientId, seq: 0, ...options.welcome }));
  await until(() => room.state === "open", "the SDK to open");
  return { room, ws };
}

/** Each SDK call that sends a golden frame, by the golden entry's source.fn. */
const CALLS = {
  "client::Client::publish": (room, s) => room.publish(JSON.parse(s.data)),
  "client::Client::direct": (room, s) => room.sendTo(JSON.parse(s.to), JSON.parse(s.data)),
  "client::Client::input": (room, s) => room.sendInput(JSON.parse(s.to), JSON.parse(s.data)),
  "sdk/js/index.js Room.history": (room, s) => room.history(s.options),
  "sdk/js/index.js Room.broadcast": (room, s) => room.broadcast(JSON.parse(s.data), { ack: s.ack }),
  "sdk/js/index.js Room.setPresence": (room, s) => room.setPresence(JSON.parse(s.meta)),
};

test("the SDK sends exactly the golden bytes for every call, and every client frame type of the schema", async (t) => {
  const { connect, stale } = await sdk();
  if (stale) return t.skip(stale);
  const types = new Set();
  const entries = golden.filter((g) => CALLS[g.source?.fn] && g.source.seed !== undefined);
  assert.ok(entries.length >= 10, `${entries.length} golden frames the SDK builds`);
  for (const g of entries) {
    const { room, ws } = await openRoom(connect, { seed: g.source.seed });
    const settled = CALLS[g.source.fn](room, g.source).catch(() => {});
    assert.deepEqual(ws.sent, [g.text], `${g.name}: the SDK sends the golden bytes`);
    assertValid("client", ws.sent[0], g.name);
    types.add(JSON.parse(g.text).type);
    room.close();
    await settled;
  }
  // The token refresh: a welcome whose token expires soon, so the SDK refreshes it at once.
  const refresh = golden.find((g) => g.source?.fn === "sdk/js/index.js token refresh");
  const { room, ws } = await openRoom(connect, {
    token: async () => refresh.source.token,
    pingIntervalMs: 30,
    welcome: { expires: Date.now() + 200 },
  });
  try {
    await until(() => ws.sent.some((s) => s.includes('"refresh"')), "a refresh frame");
    assert.equal(
      ws.sent.find((s) => s.includes('"refresh"')),
      refresh.text,
      "the refresh frame is the golden one",
    );
    await until(() => ws.sent.includes('{"type":"ping"}'), "a ping frame");
    for (const text of ws.sent) assertValid("client", text, "an SDK frame");
    for (const text of ws.sent) types.add(JSON.parse(text).type);
  } finally {
    room.close();
  }
  // A read mark: the SDK echoes the golden mark with the golden read frame.
  const mark = golden.find((g) => g.name === "mark");
  const read = golden.find((g) => g.name === "read");
  const marked = await openRoom(connect, {});
  try {
    marked.ws.receive(mark.text);
    await until(() => marked.ws.sent.includes(read.text), "the read echo");
    assertValid("client", read.text, read.name);
    types.add("read");
  } finally {
    marked.room.close();
  }
  const schemaTypes = schema.$defs.clientFrame.oneOf.map((r) => {
    const d = schema.$defs[r.$ref.split("/").pop()];
    return d.properties?.type?.const ?? d.oneOf[0].properties.type.const;
  });
  assert.deepEqual([...types].sort(), schemaTypes.sort(), "the SDK sends every client frame type");
});

test("frames the SDK sends validate, and golden answers settle its calls", async (t) => {
  const { connect, stale } = await sdk();
  if (stale) return t.skip(stale);
  const { room, ws } = await openRoom(connect, { seed: 7 });
  try {
    const published = room.publish({ text: "hello" });
    const sentTo = room.sendTo({ user: "bob" }, "psst");
    const sentToClient = room.sendTo({ clientId: "tab-2" }, null);
    const page = room.history({ limit: 2 });
    const acked = room.broadcast({ cursor: [1, 2] }, { ack: true });
    const presence = room.setPresence({ name: "Alice" });
    const frames = ws.sent.map((s) => JSON.parse(s));
    for (const text of ws.sent) assertValid("client", text, "an SDK frame");
    const publish = frames.find((f) => f.type === "publish");
    assert.deepEqual(publish.data, { text: "hello" });
    assert.deepEqual(
      frames.filter((f) => f.type === "direct").map((f) => f.to),
      [{ user: "bob" }, { clientId: "tab-2" }],
    );
    // Settle the promises with golden-shaped answers.
    const answer = (name, id, more) => ws.receive(JSON.stringify({ ...JSON.parse(golden.find((g) => g.name === name).text), id, ...more }));
    // (the room is at seq 0: the publish is the next message)
    answer("ack of a publish", publish.id, { seq: 1 });
    for (const f of frames.filter((f) => f.type === "direct")) answer("ack of a direct message (sender with the presence right)", f.id);
    answer("history page (frame::encode_history)", frames.find((f) => f.type === "history").id);
    answer("ack of a broadcast or presence change (frame::encode_done)", frames.find((f) => f.type === "broadcast").id);
    answer("ack of a broadcast or presence change (frame::encode_done)", frames.find((f) => f.type === "presence").id);
    assert.equal(await published, 1);
    await sentTo;
    await sentToClient;
    const { messages, more } = await page;
    assert.deepEqual(
      [messages.map((m) => m.seq), typeof more],
      [JSON.parse(golden.find((g) => g.name === "history page (frame::encode_history)").text).messages.map((m) => m.seq), "boolean"],
    );
    await acked;
    await presence;
  } finally {
    room.close();
  }
});

test("session frames: the examples in docs/PROTOCOL.md validate, and malformed ones do not", () => {
  const doc = readFileSync(join(ROOT, "docs/PROTOCOL.md"), "utf8");
  const start = doc.indexOf("## Sessions");
  const text = doc.slice(start, doc.indexOf("\n## ", start + 1));
  const quoted = [...text.matchAll(/`(\{"type":[^`]*\})`/g)].map((m) => m[1]);
  let checked = 0;
  for (const q of quoted) {
    let f;
    try {
      f = JSON.parse(q);
    } catch {
      continue; // a quote with placeholders (…) is not JSON
    }
    const ok = validators["session-client"](f) || validators["session-server"](f);
    assert.ok(ok, `docs/PROTOCOL.md, Sessions, quotes ${q}`);
    checked++;
  }
  assert.ok(checked >= 8, `only ${checked} session examples checked`);
  assertInvalid("session-client", { type: "join" }, "a join without a room");
  assertInvalid("session-client", { type: "join", room: "r", since: 3 }, "a resume without its epoch");
  assertInvalid("session-client", { type: "publish", id: "m", data: 1 }, "a room frame without its room");
  assertInvalid("session-client", { type: "mark_read", room: "r" }, "mark_read without a seq");
  assertInvalid("session-server", { type: "welcome", room: "r", epoch: "e", seq: 0 }, "a welcome (it comes as joined)");
  assertInvalid("session-server", { type: "left", room: "r", code: 4411 }, "left without its reason");
  assertInvalid("session-server", { type: "gap", room: "r", reason: "retention" }, "a retention gap without its bounds");
});
