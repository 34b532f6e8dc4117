// The `input` right against the real runtime: only a token that grants it may send `input`
// frames (a shared terminal's keystrokes), the room refuses the rest, and only the target hears it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, roomName, startEdge, token } from "../harness.mjs";

test("a viewer without the input right cannot type: the room refuses the frame", async () => {
  const edge = await startEdge();
  const room = roomName("term");
  try {
    const agent = await Client.connect(edge, room, { cid: "agent" }, { token: token("host", { [room]: ["subscribe", "publish"] }) });
    const viewer = await Client.connect(edge, room, { cid: "viewer" }, { token: token("val", { [room]: ["subscribe", "publish"] }) });
    const typist = await Client.connect(edge, room, { cid: "typist" }, { token: token("tom", { [room]: ["subscribe", "input"] }) });
    const keys = (id) => ({ type: "input", id, to: { clientId: "agent" }, data: { keys: "ls\r" } });

    viewer.send(keys("v1"));
    const refused = await viewer.next((f) => f.id === "v1");
    assert.deepEqual([refused.type, refused.code], ["error", "forbidden"]);

    typist.send(keys("t1"));
    assert.deepEqual(await typist.next((f) => f.id === "t1"), { type: "ack", id: "t1" });
    const got = await agent.next((f) => f.type === "input");
    assert.deepEqual([got.from, got.user, got.data], ["typist", "tom", { keys: "ls\r" }]);
    // The viewer's refused frame never reached the agent, and nobody else heard the typist.
    assert.equal(agent.frames.filter((f) => f.type === "input").length, 1);
    assert.equal(viewer.frames.filter((f) => f.type === "input").length, 0);
    for (const c of [agent, viewer, typist]) await c.close();
  } finally {
    await edge.stop();
  }
});
