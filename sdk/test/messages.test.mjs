// roomcast/messages (and so roomcast/react's useMessages): pending publishes shown at once and
// replaced by their stored copies, refusals shown as failed, a bounded window. Built package, fake
// socket, fake clock.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { FakeClock, fakeSockets, flush, message, welcome } from "./fakes.mjs";

let connect, followMessages;
before(async () => {
  ({ connect } = await import(new URL("../dist/index.js", import.meta.url)));
  ({ followMessages } = await import(new URL("../dist/messages.js", import.meta.url)));
});

async function setup(options = {}) {
  const fake = fakeSockets();
  const room = connect({
    url: "https://rooms.example",
    room: "r",
    clientId: "me",
    WebSocket: fake.FakeSocket,
    clock: new FakeClock(),
    seed: 9,
    ...options,
  });
  await flush();
  const views = [];
  const feed = followMessages(room, { limit: 10, ...options.list }, (v) => views.push(v));
  return { room, feed, views, ...fake };
}

/** Opens the socket and answers the list's first history read with `stored`. */
function open(ws, stored = []) {
  ws.open();
  ws.receive(welcome(stored.at(-1)?.seq ?? 0));
  const read = ws.frames.find((f) => f.type === "history");
  ws.receive({ type: "history", id: read.id, messages: stored, more: false });
}

const shown = (feed) => feed.view.messages.map((m) => (m.pending ? `…${m.data}` : m.failed ? `!${m.data}` : `${m.seq}:${m.data}`));

test("a publish shows at once as pending (offline too), then as its stored copy in its place, once", async () => {
  const { room, feed, last } = await setup();
  const offline = room.publish("a");
  assert.deepEqual(shown(feed), ["…a"], "before the room is even open");
  open(last(), [message(1, "other", "x")]);
  await flush();
  assert.deepEqual(shown(feed), ["1:x", "…a"]);
  const [a] = last().frames.filter((f) => f.type === "publish");
  assert.equal(feed.view.messages[1].id, a.id, "the id the SDK sends");
  // echo off: the stored copy comes from the ack
  last().receive({ type: "ack", id: a.id, seq: 2 });
  assert.equal(await offline, 2);
  await flush();
  assert.deepEqual(shown(feed), ["1:x", "2:a"]);
  assert.deepEqual([feed.view.messages[1].from, feed.view.messages[1].user], ["me", "u-me"]);
  // a replay of it (after a reconnect, say) does not show it twice
  last().receive(message(3, "other", "y"));
  assert.deepEqual(shown(feed), ["1:x", "2:a", "3:y"]);
  room.close();
});

test("with echo on the live message replaces the pending one, and the later ack adds nothing", async () => {
  const { room, feed, last } = await setup({ echo: true });
  open(last());
  const p = room.publish("b");
  const [f] = last().frames.filter((x) => x.type === "publish");
  last().receive({ ...message(1, "me", "b"), id: f.id });
  assert.deepEqual(shown(feed), ["1:b"]);
  last().receive({ type: "ack", id: f.id, seq: 1 });
  await p;
  await flush();
  assert.deepEqual(shown(feed), ["1:b"]);
  room.close();
});

test("a refused publish turns failed with its error; one refused at once shows failed too", async () => {
  const { room, feed, last } = await setup({ queueMax: 1 });
  const a = room.publish("a").catch((e) => e);
  const b = room.publish("b").catch((e) => e);
  await flush();
  assert.deepEqual(shown(feed), ["…a", "!b"]);
  assert.equal(feed.view.messages[1].error.code, "queue_full");
  open(last());
  const [f] = last().frames.filter((x) => x.type === "publish");
  last().receive({ type: "error", id: f.id, code: "forbidden", message: "no" });
  assert.equal((await a).code, "forbidden");
  await b;
  await flush();
  assert.deepEqual(shown(feed), ["!a", "!b"]);
  assert.equal(feed.view.messages[0].error.code, "forbidden");
  room.close();
});

test("at most `max` messages: the oldest stored ones go and `more` turns true", async () => {
  const { room, feed, last } = await setup({ list: { max: 3 } });
  open(last(), [message(1), message(2)]);
  assert.equal(feed.view.more, false);
  for (let s = 3; s <= 6; s++) last().receive(message(s));
  assert.deepEqual(
    feed.view.messages.map((m) => m.seq),
    [4, 5, 6],
  );
  assert.equal(feed.view.more, true);
  room.publish("p");
  assert.deepEqual(shown(feed), ["5:[object Object]", "6:[object Object]", "…p"]);
  feed.stop();
  room.close();
});
