// roomcast/server (sdk/server/index.mjs), unit-tested in plain Node: mintToken against
// tools/token.mjs, verifyWebhook against signatures made by an independent Standard Webhooks
// implementation (the `standardwebhooks` package), and the HTTP client against an injected fetch
// that records each request. The package's exports map and its types (tsc --strict) are checked on
// the sdk folder as a consumer resolves it. The calls against the real edge are in
// tests/e2e/server.test.mjs.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";
import { mintToken as mintTokenTool } from "../../tools/token.mjs";
import { createClient, mintToken, RoomcastError, verifyWebhook, WebhookVerificationError } from "../server/index.mjs";

const SDK = fileURLToPath(new URL("..", import.meta.url));
const ROOT = join(SDK, "..");
const rejection = (promise) =>
  promise.then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e) => e,
  );

describe("mintToken", () => {
  const cases = [
    { secret: "dev-secret", user: "alice", rooms: { "chat:*": ["subscribe", "publish", "presence"] }, now: 1_795_296_400_123 },
    { secret: "dev-secret", user: "bob", rooms: { news: ["subscribe"], "chat:*": ["publish"] }, ttlSeconds: 60, now: 0 },
    {
      secret: "ключ 🔑 with spaces",
      user: "u@example.com",
      rooms: { "*": ["presence"] },
      meta: { name: "Zoë 🦊", tags: ["a", "b"], n: 1.5 },
      now: 1_700_000_000_999,
    },
    { secret: "s", user: "x", rooms: {}, ttlSeconds: 86_400, meta: {}, now: 1_234 },
    { secret: "s", user: "no-rooms", now: 5_000 }, // grants nothing, as tools/token.mjs allows
    { secret: "a".repeat(200), user: "A.b_c-d:e", rooms: { "demo:lobby": [] }, now: 1_795_296_400_000 },
  ];

  test("the same token as tools/token.mjs for the same inputs and now", async () => {
    for (const c of cases) {
      const ours = await mintToken(c);
      assert.equal(ours, mintTokenTool(c), JSON.stringify(c));
      assert.match(ours, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    }
  });

  test("random users, secrets, metas and times give the same token as tools/token.mjs", async () => {
    const chars = "ABCXYZabcxyz0189_-.:@";
    for (let i = 0; i < 200; i++) {
      const bytes = randomBytes(48);
      const user = `u${Array.from(bytes.subarray(0, 1 + (bytes[0] % 40)), (b) => chars[b % chars.length]).join("")}`;
      const c = {
        secret: bytes.toString("latin1") + "🔑".repeat(i % 3),
        user,
        rooms: { [`room${i}:*`]: ["subscribe", "publish", "presence"].slice(0, 1 + (i % 3)) },
        ttlSeconds: 1 + bytes.readUInt16BE(2),
        meta: i % 2 ? { name: bytes.toString("base64").slice(0, i % 30), i } : undefined,
        now: bytes.readUInt32BE(4) * 1000 + (i % 1000),
      };
      assert.equal(await mintToken(c), mintTokenTool(c), JSON.stringify({ ...c, secret: undefined }));
    }
  });

  test("claims: sub, exp = iat + ttl, iat from now (floored), rooms, meta only when given", async () => {
    const token = await mintToken({ secret: "s", user: "alice", rooms: { r: ["subscribe"] }, ttlSeconds: 90, now: 10_999 });
    const [head, body] = token
      .split(".")
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    assert.deepEqual(head, { alg: "HS256", typ: "JWT" });
    assert.deepEqual(body, { sub: "alice", exp: 100, iat: 10, rooms: { r: ["subscribe"] } });
  });

  test("refuses what tools/token.mjs refuses, as a rejection with the edge's text", async () => {
    const CLAIMS = "mintToken: token claims are invalid: ";
    const bad = [
      [{ user: "alice", rooms: {} }, /secret is required/, /^mintToken: secret is required$/],
      [{ secret: "s", user: "", rooms: {} }, /user must be 1-64/, `${CLAIMS}sub: user id must not be empty`],
      [{ secret: "s", user: "a b", rooms: {} }, /user must be 1-64/, `${CLAIMS}sub: user id may only contain A-Z a-z 0-9 _ - . : @`],
      [{ secret: "s", user: "x".repeat(65), rooms: {} }, /user must be 1-64/, `${CLAIMS}sub: user id is longer than 64 bytes`],
      [{ secret: "s", user: ":api", rooms: {} }, /reserved/, `${CLAIMS}sub: reserved (starts with ':' or 'anon:')`],
      [{ secret: "s", user: "anon:bob", rooms: {} }, /reserved/, `${CLAIMS}sub: reserved (starts with ':' or 'anon:')`],
      [
        { secret: "s", user: "alice", rooms: { r: ["write"] } },
        /unknown right write for r/,
        /^mintToken: token claims are invalid: unknown variant `write`, .* \(in the rights for r\)$/,
      ],
    ];
    for (const [options, tool, ours] of bad) {
      assert.throws(() => mintTokenTool(options), tool);
      const e = await rejection(mintToken(options));
      assert.ok(e instanceof TypeError, String(e));
      if (typeof ours === "string") assert.equal(e.message, ours);
      else assert.match(e.message, ours);
    }
  });

  test("also refuses, before signing, what the edge would refuse: a bad ttl, meta that is not a small object, rights that are not an array", async () => {
    const META = /^mintToken: token claims are invalid: meta must be a JSON object of at most 1024 bytes$/;
    const bad = [
      [{ ttlSeconds: 0 }, /ttlSeconds/],
      [{ ttlSeconds: 1.5 }, /ttlSeconds/],
      [{ ttlSeconds: "3600" }, /ttlSeconds/],
      [{ meta: ["a"] }, META],
      [{ meta: null }, META],
      [{ meta: "x" }, META],
      [{ meta: { n: "x".repeat(1020) } }, META],
      [{ rooms: { r: "subscribe" } }, /must be an array/],
      [{ rooms: ["r"] }, /rooms must be an object/],
      [{ now: Number.NaN }, /now/],
      [{ now: -1 }, /now/],
    ];
    for (const [extra, message] of bad) {
      const e = await rejection(mintToken({ secret: "s", user: "alice", rooms: { r: ["subscribe"] }, ...extra }));
      assert.ok(e instanceof TypeError);
      assert.match(e.message, message, JSON.stringify(extra));
    }
    // 1,024 bytes exactly is allowed: {"n":"…"} is 8 bytes around the string
    await mintToken({ secret: "s", user: "alice", meta: { n: "x".repeat(1016) } });
  });

  // Found by the red-team report (#22): mintToken signed tokens the edge then refused.
  test("the edge's token contract (tests/golden/tokens.json): refuses exactly what the edge refuses, with the edge's text", async () => {
    const table = JSON.parse(readFileSync(join(ROOT, "tests", "golden", "tokens.json"), "utf8"));
    assert.ok(table.cases.length >= 30, "the table lost its cases");
    for (const { name, options, refused } of table.cases) {
      const minted = mintToken({ secret: table.secret, now: table.now, ...options });
      if (refused === null) {
        const t = await minted;
        assert.ok(t.length <= 4096, `${name}: ${t.length} bytes`);
        // what was signed is what the options say (the table's other half signs the same claims)
        const claims = JSON.parse(Buffer.from(t.split(".")[1], "base64url").toString());
        const iat = Math.floor(table.now / 1000);
        const expected = { sub: options.user, exp: iat + 3600, iat, rooms: options.rooms, meta: options.meta };
        assert.deepEqual(claims, JSON.parse(JSON.stringify(expected)), name);
        continue;
      }
      const e = await rejection(minted);
      assert.ok(e instanceof TypeError, `${name}: ${e}`);
      const edge = `mintToken: ${refused}`;
      assert.ok(e.message.startsWith(edge), `${name}: ${JSON.stringify(e.message)} does not start with ${JSON.stringify(edge)}`);
    }
  });

  test("values that serialize into something else are held to the rules as they serialize (toJSON)", async () => {
    const META = "mintToken: token claims are invalid: meta must be a JSON object of at most 1024 bytes";
    const base = { secret: "s", user: "alice", rooms: { r: ["subscribe"] }, now: 1_800_000_000_000 };
    // an object whose JSON is not an object: a Date, toJSON to an array, a string or nothing
    for (const meta of [new Date(0), { toJSON: () => [1] }, { toJSON: () => "x" }, { toJSON: () => undefined }, () => ({})]) {
      assert.equal((await rejection(mintToken({ ...base, meta }))).message, META);
    }
    // an object whose JSON is larger than it looks, or whose toJSON answers differently each time
    assert.equal((await rejection(mintToken({ ...base, meta: { toJSON: () => ({ n: "x".repeat(2000) }) } }))).message, META);
    let calls = 0;
    const fickle = { toJSON: () => (calls++ === 0 ? { ok: true } : [1]) };
    const t = await mintToken({ ...base, meta: fickle });
    assert.equal(calls, 1, "serialized once");
    const signed = JSON.parse(Buffer.from(t.split(".")[1], "base64url").toString());
    assert.deepEqual(signed.meta, { ok: true }, "what was checked is what was signed");
    // rooms through toJSON: checked as they serialize
    const rooms = { toJSON: () => ({ "bad/room": ["subscribe"] }) };
    assert.match((await rejection(mintToken({ ...base, rooms }))).message, /^mintToken: room pattern: room name may only contain/);
    const roomsWrite = { toJSON: () => ({ r: ["write"] }) };
    assert.match((await rejection(mintToken({ ...base, rooms: roomsWrite }))).message, /unknown variant `write`/);
    for (const rooms of [() => ({}), { toJSON: () => null }, { toJSON: () => ["r"] }]) {
      assert.match((await rejection(mintToken({ ...base, rooms }))).message, /rooms must be an object/);
    }
  });
});

describe("verifyWebhook", () => {
  const key = randomBytes(24);
  const secret = `whsec_${key.toString("base64")}`;
  const signer = new Webhook(secret);
  const body = JSON.stringify({
    events: [
      { id: "evt_0123456789abcdef_1", type: "room.occupied", room: "chat:lobby", ts: 1795291934172 },
      {
        id: "evt_0123456789abcdef_2",
        type: "presence.joined",
        room: "chat:lobby",
        ts: 1795291934173,
        user: "alice",
        meta: { name: "Zoë 🦊" },
      },
      {
        id: "evt_0123456789abcdef_3",
        type: "message.published",
        room: "chat:lobby",
        ts: 1795291934180,
        epoch: "07cb",
        seq: 1,
        from: "tab-1",
        user: "alice",
        data: { text: 'hé \u2028 "quoted"' },
        messageId: "m-1",
      },
    ],
  });
  /** Headers as the room sends them, signed by the standardwebhooks package. */
  function signed(payload = body, { id = "batch_evt_0123456789abcdef_1_3", at = new Date(), by = signer } = {}) {
    return {
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": by.sign(id, at, payload),
      "content-type": "application/json",
    };
  }
  const failure = async (promise, code) => {
    const e = await rejection(promise);
    assert.ok(e instanceof WebhookVerificationError, String(e));
    assert.equal(e.name, "WebhookVerificationError");
    assert.equal(e.code, code, e.message);
    return e;
  };

  test("accepts what standardwebhooks signs: the body as a string or bytes, headers as an object or a Headers", async () => {
    const headers = signed();
    const expected = JSON.parse(body);
    assert.deepEqual(await verifyWebhook(body, headers, secret), expected);
    assert.deepEqual(await verifyWebhook(new TextEncoder().encode(body), headers, secret), expected);
    assert.deepEqual(await verifyWebhook(Buffer.from(body), headers, secret), expected); // Node's Buffer is a Uint8Array
    assert.deepEqual(await verifyWebhook(new TextEncoder().encode(body).buffer, headers, secret), expected);
    assert.deepEqual(await verifyWebhook(body, new Headers(headers), secret), expected);
    const mixedCase = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.replace(/(^|-)w/g, (m) => m.toUpperCase()), v]));
    assert.deepEqual(await verifyWebhook(body, mixedCase, secret), expected);
    // the standardwebhooks package agrees on the same request
    assert.deepEqual(signer.verify(body, headers), expected);
  });

  test("the whsec_ prefix is optional on the secret", async () => {
    assert.deepEqual(await verifyWebhook(body, signed(), key.toString("base64")), JSON.parse(body));
    // and a secret without padding in its base64
    const key2 = randomBytes(32);
    const unpadded = key2.toString("base64").replace(/=+$/, "");
    assert.deepEqual(
      await verifyWebhook(body, signed(body, { by: new Webhook(`whsec_${key2.toString("base64")}`) }), unpadded),
      JSON.parse(body),
    );
  });

  test("a tampered body, id or timestamp, or another secret, is bad_signature", async () => {
    const headers = signed();
    await failure(verifyWebhook(body.replace("alice", "mallory"), headers, secret), "bad_signature");
    await failure(verifyWebhook(`${body} `, headers, secret), "bad_signature");
    await failure(verifyWebhook(body, { ...headers, "webhook-id": "batch_evt_0123456789abcdef_1_4" }, secret), "bad_signature");
    await failure(
      verifyWebhook(body, { ...headers, "webhook-timestamp": String(Number(headers["webhook-timestamp"]) - 1) }, secret),
      "bad_signature",
    );
    await failure(verifyWebhook(body, headers, `whsec_${randomBytes(24).toString("base64")}`), "bad_signature");
    // the signature of one byte flipped, truncated, or not base64
    const sig = headers["webhook-signature"].slice(3);
    const flipped = Buffer.from(sig, "base64");
    flipped[5] ^= 1;
    for (const wrong of [`v1,${flipped.toString("base64")}`, `v1,${sig.slice(0, 20)}`, "v1,", "v1,!!!notbase64!!!", sig, "v1"]) {
      await failure(verifyWebhook(body, { ...headers, "webhook-signature": wrong }, secret), "bad_signature");
    }
  });

  test("several signatures: one v1 match is enough, in any position; other versions are ignored", async () => {
    const headers = signed();
    const good = headers["webhook-signature"];
    const otherKey = new Webhook(`whsec_${randomBytes(24).toString("base64")}`);
    const other = otherKey.sign(headers["webhook-id"], new Date(Number(headers["webhook-timestamp"]) * 1000), body);
    const v1a = `v1a,${randomBytes(64).toString("base64")}`;
    for (const list of [`${other} ${good}`, `${good} ${other}`, `${v1a} ${good}`, `${other} ${v1a} ${good} ${other}`]) {
      assert.deepEqual(await verifyWebhook(body, { ...headers, "webhook-signature": list }, secret), JSON.parse(body), list);
      assert.deepEqual(signer.verify(body, { ...headers, "webhook-signature": list }), JSON.parse(body)); // the reference agrees
    }
    for (const list of [`${other} ${v1a}`, `${other}`, good.replace("v1,", "v2,"), good.replace("v1,", "V1,")]) {
      await failure(verifyWebhook(body, { ...headers, "webhook-signature": list }, secret), "bad_signature");
    }
    // the header sent twice: fetch's Headers and Node join the values with ", "
    for (const [first, second] of [
      [other, good],
      [good, other],
    ]) {
      const twice = new Headers(headers);
      twice.set("webhook-signature", first);
      twice.append("webhook-signature", second);
      assert.equal(twice.get("webhook-signature"), `${first}, ${second}`);
      assert.deepEqual(await verifyWebhook(body, twice, secret), JSON.parse(body));
    }
    // as an array (a plain object built from raw headers)
    assert.deepEqual(await verifyWebhook(body, { ...headers, "webhook-signature": [other, good] }, secret), JSON.parse(body));
  });

  test("the timestamp must be within 300 s either way by default, or the tolerance given", async () => {
    const now = 1_795_291_934_500;
    const at = (offsetSeconds) => signed(body, { at: new Date(now + offsetSeconds * 1000) });
    assert.ok(await verifyWebhook(body, at(-300), secret, { now }));
    assert.ok(await verifyWebhook(body, at(300), secret, { now }));
    await failure(verifyWebhook(body, at(-301), secret, { now }), "timestamp_too_old");
    await failure(verifyWebhook(body, at(301), secret, { now }), "timestamp_too_new");
    await failure(verifyWebhook(body, at(-31), secret, { now, toleranceSeconds: 30 }), "timestamp_too_old");
    await failure(verifyWebhook(body, at(31), secret, { now, toleranceSeconds: 30 }), "timestamp_too_new");
    assert.ok(await verifyWebhook(body, at(-3000), secret, { now, toleranceSeconds: 3600 }));
    // against the real clock: an hour old, as a replayed request would be
    const e = await failure(verifyWebhook(body, signed(body, { at: new Date(Date.now() - 3_600_000) }), secret), "timestamp_too_old");
    assert.match(e.message, /36\d\d s old \(tolerance 300 s\)/);
    await failure(verifyWebhook(body, signed(body, { at: new Date(Date.now() + 600_000) }), secret), "timestamp_too_new");
    // the old timestamp is refused before the signature is looked at, and the reference agrees
    assert.throws(() => signer.verify(body, signed(body, { at: new Date(Date.now() - 3_600_000) })), /too old/);
  });

  test("missing or malformed headers", async () => {
    const headers = signed();
    for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
      const without = { ...headers };
      delete without[name];
      const e = await failure(verifyWebhook(body, without, secret), "missing_header");
      assert.match(e.message, new RegExp(name));
      await failure(verifyWebhook(body, { ...headers, [name]: "" }, secret), "missing_header");
    }
    await failure(verifyWebhook(body, {}, secret), "missing_header");
    await failure(verifyWebhook(body, new Headers(), secret), "missing_header");
    for (const ts of ["soon", "1e9", "-5", "12.5", "0x10"]) {
      await failure(verifyWebhook(body, { ...headers, "webhook-timestamp": ts }, secret), "bad_timestamp");
    }
  });

  test("a signed body that is not a webhook payload is bad_body", async () => {
    for (const payload of ["not json", "[1,2]", '{"events":{}}', "null", '"x"']) {
      await failure(verifyWebhook(payload, signed(payload), secret), "bad_body");
    }
    const invalidUtf8 = Buffer.from([0x7b, 0xff, 0x7d]);
    await failure(
      verifyWebhook(
        invalidUtf8,
        {
          ...signed(""),
          "webhook-signature": `v1,${hmacOf(key, "batch_evt_0123456789abcdef_1_3", signed("")["webhook-timestamp"], invalidUtf8)}`,
        },
        secret,
      ),
      "bad_body",
    );
  });

  test("a programmer's error is a TypeError: a secret that is not base64, a parsed body", async () => {
    for (const bad of ["whsec_", "whsec_not base64!", "", undefined, 42]) {
      const e = await rejection(verifyWebhook(body, signed(), bad));
      assert.ok(e instanceof TypeError, `${bad}: ${e}`);
    }
    const e = await rejection(verifyWebhook(JSON.parse(body), signed(), secret));
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /raw request body/);
  });

  test("random payloads and mutations: accepted exactly when the standardwebhooks package accepts them", async () => {
    for (let i = 0; i < 200; i++) {
      const payload = JSON.stringify({
        events: [{ id: `evt_${i}`, type: "message.published", data: randomBytes(1 + (i % 50)).toString("latin1") }],
      });
      const headers = signed(payload, { id: `batch_${randomBytes(6).toString("hex")}_${i}` });
      const candidates = [[payload, headers]];
      const at = i % payload.length;
      candidates.push([payload.slice(0, at) + String.fromCharCode(payload.charCodeAt(at) ^ 1) + payload.slice(at + 1), headers]);
      candidates.push([payload, { ...headers, "webhook-id": `${headers["webhook-id"]}x` }]);
      for (const [p, h] of candidates) {
        let reference;
        try {
          signer.verify(p, h);
          reference = true;
        } catch {
          reference = false;
        }
        const ours = await verifyWebhook(p, h, secret).then(
          () => true,
          (e) => {
            if (!(e instanceof WebhookVerificationError)) throw e;
            return e.code === "bad_body" ? "signed" : false;
          },
        );
        // a mutated payload may stop being JSON; the reference checks the signature first too
        assert.equal(ours === "signed" ? true : ours, reference, `case ${i}: ${p}`);
      }
    }
  });
});

/** A v1 signature of raw bytes, for the one case the standardwebhooks signer cannot make (a body that is not UTF-8). */
function hmacOf(key, id, ts, bytes) {
  return createHmac("sha256", key)
    .update(Buffer.concat([Buffer.from(`${id}.${ts}.`), bytes]))
    .digest("base64");
}

describe("createClient", () => {
  /** A fetch that records each request and answers with the next response given (default 200 `{}`). */
  function fakeFetch(...answers) {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url, method: init.method, headers: init.headers, body: init.body, signal: init.signal });
      const next = answers.shift() ?? { status: 200, body: {} };
      if (typeof next === "function") return next(url, init);
      const text = typeof next.body === "string" ? next.body : JSON.stringify(next.body);
      return new Response(text, { status: next.status ?? 200, headers: next.headers });
    };
    return { fetch, calls };
  }
  const client = (fetch, options = {}) => createClient({ url: "https://rooms.example", apiKey: "key-1", fetch, ...options });

  test("publish: POST /rooms/:room/messages with the API key and {data, id}; the answer as the server sent it", async () => {
    const { fetch, calls } = fakeFetch(
      { body: { seq: 7, id: "job-42" } },
      { body: { seq: 7, id: "job-42", duplicate: true } },
      { body: { seq: 8 } },
    );
    const rc = client(fetch);
    assert.deepEqual(await rc.publish("todo:shared", { text: "hi" }, { id: "job-42" }), { seq: 7, id: "job-42" });
    assert.deepEqual(await rc.publish("todo:shared", { text: "hi" }, { id: "job-42" }), { seq: 7, id: "job-42", duplicate: true });
    assert.deepEqual(await rc.publish("todo:shared", null), { seq: 8 });
    assert.equal(calls[0].url, "https://rooms.example/rooms/todo:shared/messages");
    assert.equal(calls[0].method, "POST");
    assert.deepEqual(calls[0].headers, { authorization: "Bearer key-1", accept: "application/json", "content-type": "application/json" });
    assert.equal(calls[0].body, '{"data":{"text":"hi"},"id":"job-42"}');
    assert.equal(calls[2].body, '{"data":null}');
  });

  test("publishBatch: one POST with the array; the answer's messages as sent", async () => {
    const answer = { messages: [{ seq: 8 }, { seq: 9, id: "b" }, { seq: 7, id: "a", duplicate: true }] };
    const { fetch, calls } = fakeFetch({ body: answer });
    assert.deepEqual(await client(fetch).publishBatch("r", [{ data: 1 }, { data: [2], id: "b" }, { data: "3", id: "a" }]), answer);
    assert.equal(calls[0].url, "https://rooms.example/rooms/r/messages");
    assert.equal(calls[0].body, '[{"data":1},{"data":[2],"id":"b"},{"data":"3","id":"a"}]');
  });

  test("history, presence, stats: GETs without a body; history's options as the query", async () => {
    const { fetch, calls } = fakeFetch();
    const rc = client(fetch);
    await rc.history("r");
    await rc.history("r", { since: 0, limit: 5 });
    await rc.history("r", { before: 40, limit: 1000 });
    await rc.presence("r");
    await rc.stats("r");
    assert.deepEqual(
      calls.map((c) => [c.method, c.url, c.body]),
      [
        ["GET", "https://rooms.example/rooms/r/history", undefined],
        ["GET", "https://rooms.example/rooms/r/history?since=0&limit=5", undefined],
        ["GET", "https://rooms.example/rooms/r/history?before=40&limit=1000", undefined],
        ["GET", "https://rooms.example/rooms/r/presence", undefined],
        ["GET", "https://rooms.example/rooms/r/stats", undefined],
      ],
    );
    assert.deepEqual(calls[0].headers, { authorization: "Bearer key-1", accept: "application/json" });
  });

  test("kick: POST /kick with only the fields given", async () => {
    const { fetch, calls } = fakeFetch({ body: { closed: 2 } });
    const rc = client(fetch);
    assert.deepEqual(await rc.kick("r", { user: "alice" }), { closed: 2 });
    await rc.kick("r", { user: "bob", banSeconds: 600, reason: "spam" });
    await rc.kick("r", { user: "carol", banSeconds: 0 });
    assert.deepEqual(
      calls.map((c) => [c.method, c.url, c.body]),
      [
        ["POST", "https://rooms.example/rooms/r/kick", '{"user":"alice"}'],
        ["POST", "https://rooms.example/rooms/r/kick", '{"user":"bob","banSeconds":600,"reason":"spam"}'],
        ["POST", "https://rooms.example/rooms/r/kick", '{"user":"carol","banSeconds":0}'],
      ],
    );
  });

  test("closeSession: DELETE /sessions/:user; a bad user id is a TypeError before any request", async () => {
    const { fetch, calls } = fakeFetch({ body: { closed: 3 } });
    const rc = client(fetch);
    assert.deepEqual(await rc.closeSession("alice"), { closed: 3 });
    await assert.rejects(rc.closeSession("a b"), TypeError);
    await assert.rejects(rc.closeSession(""), TypeError);
    assert.deepEqual(
      calls.map((c) => [c.method, c.url, c.body]),
      [["DELETE", "https://rooms.example/sessions/alice", undefined]],
    );
  });

  test("requeueWebhooks: POST /rooms/:room/webhooks/requeue without a body; deleteHistory: DELETE /rooms/:room/history", async () => {
    const { fetch, calls } = fakeFetch({ body: { requeued: 3 } }, { body: { epoch: "9f2c", deleted: 41 } });
    const rc = client(fetch);
    assert.deepEqual(await rc.requeueWebhooks("chat:lobby"), { requeued: 3 });
    assert.deepEqual(await rc.deleteHistory("chat:lobby"), { epoch: "9f2c", deleted: 41 });
    assert.deepEqual(
      calls.map((c) => [c.method, c.url, c.body, c.headers]),
      [
        [
          "POST",
          "https://rooms.example/rooms/chat:lobby/webhooks/requeue",
          undefined,
          { authorization: "Bearer key-1", accept: "application/json" },
        ],
        [
          "DELETE",
          "https://rooms.example/rooms/chat:lobby/history",
          undefined,
          { authorization: "Bearer key-1", accept: "application/json" },
        ],
      ],
    );
  });

  test("the url: a trailing slash, a path prefix, ws(s) taken as http(s), a query dropped", async () => {
    for (const [url, expected] of [
      ["https://rooms.example/", "https://rooms.example/rooms/r/stats"],
      ["https://example.com/realtime/", "https://example.com/realtime/rooms/r/stats"],
      ["wss://rooms.example", "https://rooms.example/rooms/r/stats"],
      ["ws://127.0.0.1:8787", "http://127.0.0.1:8787/rooms/r/stats"],
      ["http://127.0.0.1:8787?x=1", "http://127.0.0.1:8787/rooms/r/stats"],
    ]) {
      const { fetch, calls } = fakeFetch();
      await createClient({ url, apiKey: "k", fetch }).stats("r");
      assert.equal(calls[0].url, expected, url);
    }
  });

  test("the global fetch is looked up at each call, and called unbound from the client", async () => {
    const original = globalThis.fetch;
    const seen = [];
    try {
      const rc = createClient({ url: "https://rooms.example", apiKey: "k" });
      globalThis.fetch = async function (url) {
        seen.push([url, this]);
        return new Response('{"members":[]}');
      };
      assert.deepEqual(await rc.presence("r"), { members: [] });
    } finally {
      globalThis.fetch = original;
    }
    assert.deepEqual(seen, [["https://rooms.example/rooms/r/presence", globalThis]]);
  });

  test("a refusal rejects with RoomcastError: status, the server's code and message, retryAfter from Retry-After", async () => {
    const { fetch } = fakeFetch(
      {
        status: 429,
        headers: { "retry-after": "3" },
        body: { error: { code: "rate_limited", message: "over the caller's publish rate" } },
      },
      { status: 403, body: { error: { code: "forbidden", message: "the API key only" } } },
      { status: 503, headers: { "retry-after": new Date(Date.now() + 120_000).toUTCString() }, body: "<html>upstream</html>" },
      { status: 502, body: "" },
      { status: 429, body: "slow down" },
      { status: 503, body: { error: { code: "storage", message: "storage failed" } } },
      { status: 200, body: "not json" },
      { status: 200, body: "[1]" },
    );
    const rc = client(fetch);
    const limited = await rejection(rc.publish("r", 1));
    assert.ok(limited instanceof RoomcastError);
    assert.ok(limited instanceof Error);
    assert.equal(limited.name, "RoomcastError");
    assert.deepEqual([limited.status, limited.code, limited.retryAfter], [429, "rate_limited", 3]);
    assert.equal(limited.message, "roomcast: POST /rooms/r/messages: 429 over the caller's publish rate");
    const forbidden = await rejection(rc.stats("r"));
    assert.deepEqual([forbidden.status, forbidden.code, forbidden.retryAfter], [403, "forbidden", undefined]);
    assert.match(forbidden.message, /403 the API key only/);
    const unavailable = await rejection(rc.history("r"));
    assert.deepEqual([unavailable.status, unavailable.code], [503, "http_error"]); // not the edge's error body: not the room's "storage"
    assert.ok(unavailable.retryAfter >= 119 && unavailable.retryAfter <= 120, String(unavailable.retryAfter)); // an HTTP date
    assert.match(unavailable.message, /503 <html>upstream<\/html>/);
    const bad = await rejection(rc.presence("r"));
    assert.deepEqual([bad.status, bad.code], [502, "http_error"]);
    const proxied = await rejection(rc.presence("r"));
    assert.deepEqual([proxied.status, proxied.code, proxied.retryAfter], [429, "rate_limited", undefined]); // the table's code for 429
    assert.match(proxied.message, /429 slow down$/);
    const storage = await rejection(rc.publish("r", 1));
    assert.deepEqual([storage.status, storage.code], [503, "storage"]);
    for (const text of ["not json", "[1]"]) {
      const e = await rejection(rc.presence("r"));
      assert.deepEqual([e.status, e.code], [200, "bad_response"], text);
    }
  });

  test("no answer: a fetch that rejects, an answer body that cannot be read, or none within timeoutMs; every promise settles", async () => {
    const cause = new TypeError("fetch failed");
    const { fetch } = fakeFetch(
      () => Promise.reject(cause),
      () => ({ status: 200, headers: new Headers(), text: () => Promise.reject(new Error("body stream reset")) }),
    );
    const rc = client(fetch);
    const down = await rejection(rc.publish("r", 1));
    assert.deepEqual([down.status, down.code, down.cause], [0, "network", cause]);
    assert.match(down.message, /POST \/rooms\/r\/messages: fetch failed/);
    const reset = await rejection(rc.stats("r"));
    assert.deepEqual([reset.status, reset.code], [0, "network"]);
    // a fetch that never answers and ignores its signal still settles, and the signal is aborted
    let signal;
    const hung = createClient({
      url: "https://rooms.example",
      apiKey: "k",
      timeoutMs: 50,
      fetch: (_url, init) => {
        signal = init.signal;
        return new Promise(() => {});
      },
    });
    const late = await rejection(hung.publish("r", 1));
    assert.deepEqual([late.status, late.code], [0, "timeout"]);
    assert.match(late.message, /no answer within 50 ms/);
    assert.equal(signal.aborted, true);
  });

  test("arguments the server would refuse reject with a TypeError before anything is sent", async () => {
    const { fetch, calls } = fakeFetch();
    const rc = client(fetch);
    const bad = [
      () => rc.publish("a b", 1),
      () => rc.publish("x".repeat(129), 1),
      () => rc.stats("a/b"),
      () => rc.presence(undefined),
      () => rc.publish("r", undefined),
      () => rc.publish("r", 1, { id: "" }),
      () => rc.publish("r", 1, { id: "x".repeat(129) }),
      () => rc.publish("r", 1, { id: 5 }),
      () => rc.publish("r", { n: 1n }),
      () => rc.publishBatch("r", []),
      () => rc.publishBatch("r", [{ id: "x" }]),
      () => rc.publishBatch("r", [1]),
      () => rc.publishBatch("r", "x"),
      () => rc.history("r", { since: 1, before: 2 }),
      () => rc.history("r", { limit: -1 }),
      () => rc.history("r", { since: 1.5 }),
      () => rc.history("r", { before: "5" }),
      () => rc.kick("r", {}),
      () => rc.kick("r", { user: "a", banSeconds: -1 }),
      () => rc.kick("r", { user: "a", reason: 5 }),
      () => rc.requeueWebhooks("bad room"),
      () => rc.deleteHistory(""),
    ];
    for (const call of bad) {
      const e = await rejection(call());
      assert.ok(e instanceof TypeError, `${call}: ${e}`);
    }
    assert.equal(calls.length, 0);
    for (const options of [
      {},
      { url: "https://x" },
      { apiKey: "k" },
      { url: "ftp://x", apiKey: "k" },
      { url: "https://x", apiKey: "k", fetch: 1 },
      { url: "https://x", apiKey: "k", timeoutMs: 0 },
    ]) {
      assert.throws(() => createClient(options), TypeError, JSON.stringify(options));
    }
    // a missing key (an unset environment variable, a typo in its name) is said so at once
    for (const apiKey of [undefined, "", null, 5]) {
      assert.throws(() => createClient({ url: "https://x", apiKey }), {
        name: "TypeError",
        message: "createClient: apiKey is required (ROOMCAST_API_KEY)",
      });
    }
  });
});

describe("the package", () => {
  test("sdk/server imports nothing and uses no Node-only global (fetch and WebCrypto only)", () => {
    const source = readFileSync(join(SDK, "server", "index.mjs"), "utf8");
    const code = source.replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(code, /\bimport\b|\brequire\(/);
    assert.doesNotMatch(code, /\b(Buffer|process|global|__dirname)\b/);
  });

  test("the browser bundle does not carry the server code", () => {
    const bundle = readFileSync(join(SDK, "dist", "index.js"), "utf8");
    assert.ok(bundle.includes("RoomcastError")); // it is the browser bundle
    for (const marker of ["webhook-signature", "whsec_", "verifyWebhook", "mintToken", "/kick"]) {
      assert.ok(!bundle.includes(marker), `sdk/dist/index.js contains ${marker}`);
    }
    assert.doesNotMatch(readFileSync(join(SDK, "js", "index.js"), "utf8"), /(import|from)\s*\(?\s*["'][^"']*server/);
  });

  /** A consumer project whose node_modules/roomcast is the sdk folder, as `npm install` lays it out. */
  function consumer() {
    const dir = mkdtempSync(join(tmpdir(), "roomcast-server-consumer-"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(SDK, join(dir, "node_modules", "roomcast"), "dir");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    return dir;
  }

  test("roomcast/server resolves through the exports map and is listed in files", () => {
    const pkg = JSON.parse(readFileSync(join(SDK, "package.json"), "utf8"));
    assert.deepEqual(pkg.exports["./server"], { types: "./server/index.d.ts", default: "./server/index.mjs" });
    assert.ok(pkg.files.includes("server"));
    const dir = consumer();
    writeFileSync(
      join(dir, "main.mjs"),
      `import * as server from "roomcast/server";
console.log(Object.keys(server).sort().join(","));
console.log(await server.mintToken({ secret: "s", user: "alice", rooms: { r: ["subscribe"] }, now: 0 }));
`,
    );
    const [names, token] = execFileSync(process.execPath, ["main.mjs"], { cwd: dir, encoding: "utf8" }).trim().split("\n");
    assert.equal(names, "RoomcastError,WebhookVerificationError,createClient,mintToken,verifyWebhook");
    assert.equal(token, mintTokenTool({ secret: "s", user: "alice", rooms: { r: ["subscribe"] }, now: 0 }));
  });

  test("typed: a backend using roomcast/server type-checks under tsc --strict, and misuse does not", () => {
    const dir = consumer();
    const tsc = join(ROOT, "node_modules", ".bin", "tsc");
    const check = (file) => {
      try {
        return {
          ok: true,
          out: execFileSync(
            tsc,
            [
              "--noEmit",
              "--strict",
              "--module",
              "esnext",
              "--moduleResolution",
              "bundler",
              "--target",
              "es2022",
              "--lib",
              "es2022,dom",
              file,
            ],
            { cwd: dir, encoding: "utf8", stdio: "pipe" },
          ),
        };
      } catch (e) {
        return { ok: false, status: e.status, out: e.stdout };
      }
    };
    writeFileSync(
      join(dir, "backend.ts"),
      `
import { createClient, mintToken, RoomcastError, verifyWebhook, WebhookVerificationError,
  type HistoryPage, type Member, type Stats, type WebhookEvent, type PublishBatchResult } from "roomcast/server";
interface Chat { text: string }
interface Meta { name: string }
const token: Promise<string> = mintToken({ secret: "s", user: "alice", rooms: { "chat:*": ["subscribe", "publish"] }, ttlSeconds: 60, meta: { name: "A" } });
const rc = createClient({ url: "https://rooms.example.com", apiKey: "k", timeoutMs: 5000, fetch: (input, init) => fetch(input, init) });
async function run() {
  const { seq, duplicate } = await rc.publish("chat:lobby", { text: "hi" }, { id: "m-1" });
  const batch: PublishBatchResult = await rc.publishBatch<Chat>("chat:lobby", [{ data: { text: "a" } }, { data: { text: "b" }, id: "m-2" }]);
  const seqs: number[] = batch.messages.map((m) => m.seq);
  const page: HistoryPage<Chat> = await rc.history<Chat>("chat:lobby", { before: 10, limit: 5 });
  const texts: string[] = page.messages.map((m) => m.data.text + m.user + m.from + m.ts + (m.id ?? ""));
  const members: Member<Meta>[] = (await rc.presence<Meta>("chat:lobby")).members;
  const stats: Stats = await rc.stats("chat:lobby");
  const pending: number = stats.webhook.pending;
  const closed: number = (await rc.kick("chat:lobby", { user: "bob", banSeconds: 60, reason: "spam" })).closed;
  const requeued: number = (await rc.requeueWebhooks("chat:lobby")).requeued;
  const { epoch, deleted } = await rc.deleteHistory("chat:lobby");
  return [seq, duplicate, seqs, texts, members[0]?.meta?.name, stats.oldest, pending, closed, requeued, epoch.length + deleted, await token];
}
run().catch((e: unknown) => {
  if (e instanceof RoomcastError) {
    const status: number = e.status;
    const retry: number | undefined = e.retryAfter;
    console.log(status, e.code, e.message, retry);
  }
});
export async function receive(request: Request): Promise<Response> {
  const body = await request.text();
  try {
    const { events } = await verifyWebhook<Chat, Meta>(body, request.headers, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", { toleranceSeconds: 60 });
    for (const e of events) {
      if (e.type === "message.published") console.log(e.seq, e.epoch, e.data.text, e.messageId);
      else if (e.type === "presence.joined" || e.type === "presence.left") console.log(e.user, e.meta?.name);
      else console.log(e.type, e.room, e.ts, e.id);
    }
    return new Response(null, { status: 204 });
  } catch (e) {
    if (e instanceof WebhookVerificationError) return new Response(e.code, { status: e.code === "bad_body" ? 400 : 401 });
    throw e;
  }
}
export function fromNode(raw: Uint8Array, headers: Record<string, string | string[] | undefined>) {
  return verifyWebhook(raw, headers, "whsec_x");
}
const all: WebhookEvent[] = [];
void all;
`,
    );
    const good = check("backend.ts");
    assert.ok(good.ok, good.out);
    writeFileSync(
      join(dir, "misuse.ts"),
      `import { createClient, mintToken, verifyWebhook } from "roomcast/server";
void mintToken({ secret: "s", user: "a", rooms: { r: ["write"] } });
const rc = createClient({ url: "https://x" });
void createClient({ url: "https://x", apiKey: "k" }).publishBatch("r", [{ id: "x" }]);
void verifyWebhook({ events: [] }, {}, "whsec_x");
void createClient({ url: "https://x", apiKey: "k" }).kick("r", { banSeconds: 5 });
void rc;
`,
    );
    const bad = check("misuse.ts");
    assert.equal(bad.ok, false, "tsc must refuse misuse");
    assert.equal(bad.status, 2, bad.out);
    const errors = bad.out.split("\n").filter((l) => l.includes("error TS"));
    assert.equal(errors.length, 5, bad.out);
    for (const line of [2, 3, 4, 5, 6]) assert.match(bad.out, new RegExp(`misuse\\.ts\\(${line},`), bad.out);
    assert.match(bad.out, /"write"/);
    assert.match(bad.out, /'apiKey' is missing/);
  });
});
