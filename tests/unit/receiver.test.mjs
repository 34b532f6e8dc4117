// The demo webhook receiver (demo/webhooks/receiver.mjs, `npm run demo:webhooks`) against hostile
// bodies, signed with the standardwebhooks package (issue #22: a `data` nested 10,001 deep made it
// answer 500 on every retry, its JSON.stringify overflowing the stack, so the room's webhooks
// stalled behind that event). Every body gets a deliberate answer, 204 or 4xx, and the receiver
// keeps serving. No server needed: `node --test tests/unit/`.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { Webhook } from "standardwebhooks";
import { formatEvent, preview, startReceiver } from "../../demo/webhooks/receiver.mjs";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const signer = new Webhook(SECRET);

/** A message event whose `data` is the JSON text `data`, in a body the room could have sent. */
const bodyWith = (n, data) =>
  `{"events":[{"id":"evt_00000000000000aa_${n}","type":"message.published","room":"r","ts":1795291934172,`
  + `"epoch":"e","seq":${n},"from":"c","user":"u","data":${data}}]}`;

test("the receiver answers any signed body with 204 or 400, prints every event it takes, and keeps serving", async () => {
  const lines = [];
  const warnings = [];
  const server = await startReceiver({ secret: SECRET, port: 0, log: (l) => lines.push(l), warn: (w) => warnings.push(w) });
  const url = `http://127.0.0.1:${server.address().port}/`;
  const post = async (body, id = `batch_${randomBytes(4).toString("hex")}`) => {
    const at = new Date();
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
        "webhook-signature": signer.sign(id, at, body),
      },
      body,
    });
    await res.text();
    return res.status;
  };
  try {
    const taken = [
      ["the finding's 10,001 levels", "[".repeat(10_001) + "]".repeat(10_001)],
      ["200,000 levels of objects", `${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}`],
      ["a lone surrogate", '"\\ud800"'],
      ["a lone surrogate as a key", '{"\\udc00":1}'],
      ["a number beyond a double", "[1e400,-1e400]"],
      ["control characters, escaped", '"\\u0000\\u001b[31m\\n"'],
      ["a prototype key", '{"__proto__":{"polluted":true}}'],
      ["a wide object", `{${Array.from({ length: 20_000 }, (_, i) => `"k${i}":${i}`).join(",")}}`],
    ];
    for (const [i, [what, data]] of taken.entries()) {
      assert.equal(await post(bodyWith(i + 1, data)), 204, what);
      assert.equal(lines.length, i + 1, `${what}: one line`);
      assert.match(lines[i], new RegExp(`message\\.published +r \\{.*(\\}|…) evt_00000000000000aa_${i + 1}$`), what);
      assert.ok(lines[i].length < 2_500, `${what}: the line is cut short (${lines[i].length})`);
    }
    assert.match(lines[0], /"data":\[{20,}…\]{20,}/, "deep values print as …");
    assert.equal({}.polluted, undefined);
    const refused = [
      ["an event that is null", '{"events":[null]}'],
      ["events that are not objects", '{"events":[1,"x",[]]}'],
      ["events that are not an array", '{"events":{"0":{}}}'],
      ["no events", '{"evts":[]}'],
      ["not JSON", '{"events":[{"id":"x",}]}'],
      ["deep and not JSON", "[".repeat(50_000)],
    ];
    for (const [what, body] of refused) {
      assert.equal(await post(body), 400, what);
    }
    assert.equal(warnings.filter((w) => w.startsWith("refused: 400 bad_body")).length, refused.length, warnings.join("\n"));
    assert.ok(!warnings.some((w) => w.startsWith("refused: 500")), warnings.join("\n"));
    assert.equal(lines.length, taken.length, "nothing printed for a refused body");
    // still serving, and redeliveries are still marked
    assert.equal(await post(bodyWith(1, '{"text":"hi"}')), 204);
    assert.match(
      lines.at(-1),
      /\{"epoch":"e","seq":1,"from":"c","user":"u","data":\{"text":"hi"\}\} evt_00000000000000aa_1 \(again: a redelivery\)$/,
    );
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("preview prints any parsed value cut short, and what JSON.stringify prints the same", () => {
  for (const v of [null, 1, -0.5, 'a"b\n', [], {}, [1, [2, [3]]], { a: { b: [true, false, null] }, 'k"': "v" }]) {
    assert.equal(preview(v), JSON.stringify(v));
  }
  assert.equal(preview(JSON.parse("[[[[1]]]]"), { depth: 2 }), "[[…]]");
  assert.equal(preview({ n: Infinity }), '{"n":Infinity}');
  assert.equal(preview("x".repeat(50), { chars: 10 }), `"${"x".repeat(9)}…`);
  const deep = JSON.parse("[".repeat(1_000_000) + "]".repeat(1_000_000));
  assert.throws(() => JSON.stringify(deep), RangeError, "what the receiver did before");
  assert.ok(preview(deep).length < 200);
  assert.match(formatEvent({ id: 7, type: ["x"], room: { r: 1 }, ts: "later" }), /^\?\?:\?\?:\?\?\.\?\?\? \["x"\] +\{"r":1\} 7$/);
});
