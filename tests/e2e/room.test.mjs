// The room against the real runtime: ordering, resume, acks and idempotent retries, echo,
// direct messages, presence, the HTTP API, bad input and heartbeats.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { api, Client, roomName, startEdge, until } from "../harness.mjs";

const GRACE_MS = 800;
let edge;
before(async () => {
  edge = await startEdge({ vars: { PRESENCE_GRACE_MS: GRACE_MS } });
});
after(async () => {
  await edge?.stop();
});

test("one total order under concurrent publishers", async () => {
  const room = roomName("order");
  const observers = await Promise.all([1, 2].map((i) => Client.connect(edge, room, { cid: `o${i}` })));
  const publishers = await Promise.all([1, 2, 3, 4].map((i) => Client.connect(edge, room, { cid: `p${i}`, echo: 1 })));
  const perPublisher = 40;
  await Promise.all(
    publishers.map(async (p, i) => {
      for (let n = 0; n < perPublisher; n++) p.send({ type: "publish", id: `p${i}-${n}`, data: { p: i, n } });
      await p.next((f) => f.type === "ack" && f.id === `p${i}-${perPublisher - 1}`);
    }),
  );
  const total = perPublisher * publishers.length;
  for (const c of [...observers, ...publishers]) {
    await until(() => c.messages().length >= total, { what: "all messages" });
    const seqs = c.messages().map((m) => m.seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: total }, (_, i) => i + 1),
      "every client sees 1..N in order",
    );
  }
  const reference = observers[0].messages().map((m) => JSON.stringify(m.data));
  for (const c of [observers[1], ...publishers])
    assert.deepEqual(
      c.messages().map((m) => JSON.stringify(m.data)),
      reference,
    );
  for (let i = 0; i < publishers.length; i++) {
    const mine = observers[0]
      .messages()
      .filter((m) => m.data.p === i)
      .map((m) => m.data.n);
    assert.deepEqual(
      mine,
      Array.from({ length: perPublisher }, (_, n) => n),
      "each publisher's messages keep their order",
    );
  }
  await Promise.all([...observers, ...publishers].map((c) => c.close()));
});

test("resume after a disconnect replays exactly the missed messages before live ones", async () => {
  const room = roomName("resume");
  const publisher = await Client.connect(edge, room, { cid: "pub" });
  for (let i = 1; i <= 3; i++) await publisher.publish(`a${i}`, i);
  const reader = await Client.connect(edge, room, { cid: "reader" });
  const { epoch, seq } = reader.welcome;
  assert.equal(seq, 3);
  await reader.close();
  for (let i = 4; i <= 10; i++) await publisher.publish(`a${i}`, i);
  const back = await Client.connect(edge, room, { cid: "reader", since: seq, epoch });
  assert.deepEqual(back.welcome.resume, { status: "recovered", replayed: 7 });
  await publisher.publish("live", 11);
  await until(() => back.messages().length === 8, { what: "replay and live message" });
  assert.deepEqual(
    back.messages().map((m) => m.seq),
    [4, 5, 6, 7, 8, 9, 10, 11],
  );
  assert.deepEqual(
    back.messages().map((m) => m.data),
    [4, 5, 6, 7, 8, 9, 10, 11],
  );
  assert.equal(back.frames[1].type, "message", "the replay follows the welcome directly");

  const otherEpoch = await Client.connect(edge, room, { cid: "r2", since: 2, epoch: "not-this-room" });
  assert.deepEqual(otherEpoch.welcome.resume, { status: "not_recovered", reason: "epoch", since: 2 });
  await Promise.all([publisher, back, otherEpoch].map((c) => c.close()));
});

test("publish is acknowledged with its seq and a retry with the same id is applied once", async () => {
  const room = roomName("ack");
  const observer = await Client.connect(edge, room, { cid: "obs" });
  const p = await Client.connect(edge, room, { cid: "p" });
  const first = await p.publish("same-id", { n: 1 });
  assert.deepEqual(first, { type: "ack", id: "same-id", seq: 1 });
  await p.publish("other", { n: 2 });
  // a client that lost the ack reconnects and retries with the same id
  await p.close();
  const again = await Client.connect(edge, room, { cid: "p" });
  const retry = await again.publish("same-id", { n: 1 });
  assert.deepEqual(retry, { type: "ack", id: "same-id", seq: 1, duplicate: true });
  await again.publish("third", { n: 3 });
  await until(() => observer.messages().length === 3, { what: "three messages" });
  assert.deepEqual(
    observer.messages().map((m) => m.data.n),
    [1, 2, 3],
  );
  const stats = await api(edge, "GET", `/rooms/${room}/stats`);
  assert.equal(stats.json.seq, 3);
  await Promise.all([observer, again].map((c) => c.close()));
});

test("echo is per connection: off by default, on with echo=1", async () => {
  const room = roomName("echo");
  const quiet = await Client.connect(edge, room, { cid: "quiet" });
  const loud = await Client.connect(edge, room, { cid: "loud", echo: 1 });
  await quiet.publish("q1", "from quiet");
  // the room sends the echo before the ack, so after the ack it is there or it never comes
  assert.deepEqual(
    quiet.messages().map((m) => m.data),
    [],
  );
  await loud.publish("l1", "from loud");
  await quiet.next((f) => f.type === "message" && f.seq === 2);
  assert.deepEqual(
    quiet.messages().map((m) => m.data),
    ["from loud"],
  );
  assert.deepEqual(
    loud.messages().map((m) => m.data),
    ["from quiet", "from loud"],
  );
  await Promise.all([quiet, loud].map((c) => c.close()));
});

test("direct messages go to one client id, or to every connection of one user", async () => {
  const room = roomName("direct");
  const alice = await Client.connect(edge, room, { cid: "alice1", user: "alice" });
  const bobPhone = await Client.connect(edge, room, { cid: "bob-phone", user: "bob" });
  const bobLaptop = await Client.connect(edge, room, { cid: "bob-laptop", user: "bob" });
  const carol = await Client.connect(edge, room, { cid: "carol1", user: "carol" });
  alice.send({ type: "direct", id: "d1", to: { user: "bob" }, data: "hi bob" });
  assert.deepEqual(await alice.next((f) => f.id === "d1"), { type: "ack", id: "d1", delivered: 2 });
  for (const b of [bobPhone, bobLaptop]) {
    const d = await b.next((f) => f.type === "direct");
    assert.deepEqual([d.from, d.user, d.data], ["alice1", "alice", "hi bob"]);
  }
  alice.send({ type: "direct", id: "d2", to: { clientId: "carol1" }, data: "hi carol" });
  assert.equal((await alice.next((f) => f.id === "d2")).delivered, 1);
  assert.equal((await carol.next((f) => f.type === "direct")).data, "hi carol");
  alice.send({ type: "direct", id: "d3", to: { clientId: "nobody" }, data: 1 });
  assert.equal((await alice.next((f) => f.id === "d3")).code, "no_recipient");
  assert.equal(bobPhone.frames.filter((f) => f.type === "direct").length, 1, "carol's message did not reach bob");
  assert.equal(carol.frames.filter((f) => f.type === "direct").length, 1);
  assert.equal((await api(edge, "GET", `/rooms/${room}/stats`)).json.seq, 0, "direct messages are not stored");
  await Promise.all([alice, bobPhone, bobLaptop, carol].map((c) => c.close()));
});

test("presence: join, multi-device, grace on reconnect, leave", async () => {
  const room = roomName("presence");
  const watcher = await Client.connect(edge, room, { cid: "w", user: "watcher" });
  const aliceEvents = () =>
    watcher.frames.filter((f) => f.type === "presence" && f.member.user === "alice").map((f) => `${f.event}:${f.member.connections}`);
  const phone = await Client.connect(edge, room, { cid: "phone", user: "alice", meta: JSON.stringify({ name: "Alice" }) });
  const laptop = await Client.connect(edge, room, { cid: "laptop", user: "alice" });
  assert.deepEqual(
    laptop.welcome.members.find((m) => m.user === "alice"),
    { user: "alice", connections: 2, meta: { name: "Alice" } },
  );
  await until(() => aliceEvents().length === 2, { what: "join and update" });
  assert.deepEqual(aliceEvents(), ["join:1", "update:2"]);
  await phone.close();
  await until(() => aliceEvents().length === 3, { what: "update after one device left" });
  assert.equal(aliceEvents()[2], "update:1");
  // the last device drops and comes back within the grace period: no leave
  await laptop.close();
  const back = await Client.connect(edge, room, { cid: "laptop", user: "alice" });
  await until(() => aliceEvents().length === 5, { what: "grace update and return" });
  assert.deepEqual(aliceEvents().slice(3), ["update:0", "update:1"]);
  const presence = await api(edge, "GET", `/rooms/${room}/presence`);
  assert.deepEqual(
    presence.json.members.map((m) => [m.user, m.connections]),
    [
      ["alice", 1],
      ["watcher", 1],
    ],
  );
  // gone for good: the leave comes after the grace period
  const closedAt = Date.now();
  await back.close();
  await watcher.next((f) => f.type === "presence" && f.event === "leave" && f.member.user === "alice", 10_000);
  assert.ok(Date.now() - closedAt >= GRACE_MS - 50, "leave waited for the grace period");
  const after = await api(edge, "GET", `/rooms/${room}/presence`);
  assert.deepEqual(
    after.json.members.map((m) => m.user),
    ["watcher"],
  );
  await watcher.close();
});

test("an HTTP publish reaches WebSocket clients and history; stats count it", async () => {
  const room = roomName("http");
  const a = await Client.connect(edge, room, { cid: "a" });
  const b = await Client.connect(edge, room, { cid: "b" });
  const single = await api(edge, "POST", `/rooms/${room}/messages`, { data: { level: "info", line: "started" }, id: "log-1" });
  assert.equal(single.status, 200);
  assert.deepEqual(single.json, { seq: 1, id: "log-1" });
  const batch = await api(edge, "POST", `/rooms/${room}/messages`, [
    { data: "two" },
    { data: "three", id: "log-3" },
    { data: { line: "started" }, id: "log-1" },
  ]);
  assert.deepEqual(batch.json, { messages: [{ seq: 2 }, { seq: 3, id: "log-3" }, { seq: 1, id: "log-1", duplicate: true }] });
  for (const c of [a, b]) {
    await until(() => c.messages().length === 3, { what: "three messages" });
    assert.deepEqual(
      c.messages().map((m) => [m.seq, m.from]),
      [
        [1, ":api"],
        [2, ":api"],
        [3, ":api"],
      ],
    );
  }
  const history = await api(edge, "GET", `/rooms/${room}/history?since=1&limit=1`);
  assert.equal(history.status, 200);
  assert.equal(history.json.more, true);
  assert.deepEqual(
    history.json.messages.map((m) => m.data),
    ["two"],
  );
  const all = await api(edge, "GET", `/rooms/${room}/history?since=0`);
  assert.deepEqual(
    all.json.messages.map((m) => m.seq),
    [1, 2, 3],
  );
  assert.equal(all.json.epoch, a.welcome.epoch);
  const stats = await api(edge, "GET", `/rooms/${room}/stats`);
  assert.equal(stats.status, 200);
  assert.deepEqual(
    [
      stats.json.connections,
      stats.json.users,
      stats.json.seq,
      stats.json.history,
      stats.json.messagesIn,
      stats.json.messagesOut,
      stats.json.epoch,
    ],
    [2, 2, 3, 3, 3, 6, a.welcome.epoch],
  );
  // bad requests get JSON errors, and nothing is stored
  const cases = [
    ["POST", "not json", 400],
    ["POST", [], 400],
    ["POST", { id: "x" }, 400],
    ["POST", Array.from({ length: 101 }, () => ({ data: 1 })), 400],
  ];
  for (const [method, body, status] of cases) {
    const res = await api(edge, method, `/rooms/${room}/messages`, body);
    assert.equal(res.status, status, JSON.stringify(body).slice(0, 50));
    assert.ok(res.json.error.code, res.text);
  }
  assert.equal((await api(edge, "GET", `/rooms/${room}/history?since=x`)).status, 400);
  const noKey = await api(edge, "GET", `/rooms/${room}/stats`, undefined, { key: "wrong" });
  assert.equal(noKey.status, 401);
  assert.equal(noKey.json.error.code, "unauthorized");
  assert.equal((await api(edge, "GET", `/rooms/${room}/stats`)).json.seq, 3);
  await Promise.all([a, b].map((c) => c.close()));
});

test("frames ready together reach a connection coalesced in one message, one per line, in order", async () => {
  const room = roomName("coalesce");
  const observer = await Client.connect(edge, room, { cid: "watch" });
  const before = observer.received.length;
  const items = Array.from({ length: 10 }, (_, i) => ({ data: { i }, id: `c${i}` }));
  const { status } = await api(edge, "POST", `/rooms/${room}/messages`, items);
  assert.equal(status, 200);
  await until(() => observer.messages().length >= 10, { what: "the batch" });
  assert.deepEqual(
    observer.messages().map((m) => m.data.i),
    items.map((_, i) => i),
    "all ten, in publish order",
  );
  const texts = observer.received.slice(before);
  assert.equal(texts.length, 1, "one WebSocket message for the ten frames of one event");
  assert.equal(texts[0].split("\n").length, 10);
  await observer.close();
});

test("malformed, unknown and binary frames get errors; the connection and the room keep serving", async () => {
  const room = roomName("bad");
  const bad = await Client.connect(edge, room, { cid: "bad" });
  const good = await Client.connect(edge, room, { cid: "good" });
  const cases = [
    ["{oops", "bad_frame"],
    ["[1,2,3]", "bad_frame"],
    ['{"type":"teleport","id":"t1"}', "unknown_type"],
    ['{"type":"publish","id":"p1"}', "bad_frame"],
    ['{"type":"publish","data":1}', "bad_frame"],
    [`{"type":"publish","id":"${"x".repeat(200)}","data":1}`, "bad_frame"],
  ];
  for (const [text, code] of cases) {
    bad.raw(text);
    const err = await bad.next((f) => f.type === "error");
    assert.equal(err.code, code, text);
  }
  assert.equal(bad.frames.find((f) => f.type === "error" && f.code === "unknown_type").id, "t1");
  bad.ws.send(Buffer.from([1, 2, 3]));
  assert.equal((await bad.next((f) => f.type === "error")).code, "bad_frame");
  const ack = await bad.publish("after-errors", "still works");
  assert.equal(ack.seq, 1);
  assert.equal((await good.next((f) => f.type === "message")).data, "still works");
  assert.equal(good.frames.filter((f) => f.type === "error").length, 0);
  await Promise.all([bad, good].map((c) => c.close()));
});

test("an oversized frame gets too_large; the sender and the room keep working", async () => {
  // 512 KiB: over the room's 64 KiB default, within the connection's byte burst (1 MiB). Larger
  // than the bytes left, a frame closes its sender with 4009 (overload.test.mjs); the runtime's
  // own limit, 32 MiB, closes with 1009.
  const room = roomName("huge");
  const big = await Client.connect(edge, room, { cid: "big" });
  const other = await Client.connect(edge, room, { cid: "other" });
  big.raw(JSON.stringify({ type: "publish", id: "huge", data: "x".repeat(512 * 1024) }));
  const err = await big.next((f) => f.type === "error");
  assert.deepEqual([err.code, err.id], ["too_large", "huge"]);
  const ack = await big.publish("small", "fits");
  assert.equal(ack.seq, 1, "the oversized frame was not stored");
  assert.deepEqual((await other.next((f) => f.type === "message")).data, "fits");
  assert.equal(other.messages().length, 1);
  await Promise.all([big, other].map((c) => c.close()));
});

test("the heartbeat ping is answered with pong by the runtime", async () => {
  const room = roomName("hb");
  const c = await Client.connect(edge, room, { cid: "c" });
  const pong = new Promise((resolve) => c.ws.once("message", (d) => resolve(d.toString())));
  c.raw('{"type":"ping"}');
  assert.equal(await pong, '{"type":"pong"}');
  await c.close();
});

test("a WebSocket without the subprotocol still connects; a plain GET gets 426", async () => {
  const room = roomName("proto");
  const c = await Client.connect(edge, room, { cid: "np" }, { protocols: [] });
  assert.equal(c.ws.protocol, "");
  const withProto = await Client.connect(edge, room, { cid: "wp" });
  assert.equal(withProto.ws.protocol, "roomcast.v1");
  await Promise.all([c, withProto].map((x) => x.close()));
  const res = await fetch(`${edge.url}/rooms/${room}/ws`);
  assert.equal(res.status, 426);
  assert.equal((await res.json()).error.code, "bad_request");
  const badQuery = new WebSocket(`${edge.wsUrl}/rooms/${room}/ws?since=5`);
  const status = await new Promise((resolve) => badQuery.once("unexpected-response", (_q, r) => resolve(r.statusCode)));
  assert.equal(status, 400, "since without epoch is refused");
});
