// The `roomcast` CLI (cli/, on roomcast-client) against the real runtime: token, publish (a
// token's socket and the API key's HTTP), tail (rewind, since, live), clear failures, pipe of
// 100,000 lines across a SIGKILL of the runtime with none lost, duplicated or reordered, and a
// shared terminal (input only with the right, a late joiner's first screen, resize, exit).
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { Readable } from "node:stream";
import { before, test } from "node:test";
import { devVar } from "../../tools/token.mjs";
import { api, apiKey, Client, ROOT, roomName, startEdge, tempDir, token, until } from "../harness.mjs";

const BIN = join(ROOT, "target", "debug", "roomcast");

before(() => {
  // A no-op when scripts/test.sh (or an earlier run) built it.
  execFileSync("cargo", ["build", "--quiet", "-p", "roomcast-cli"], { cwd: ROOT, stdio: "inherit" });
});

/** Runs the CLI; `env` replaces the ROOMCAST_* variables; `input` is its stdin. */
function start(args, env = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ROOMCAST_")));
  const child = spawn(BIN, args, { env: { ...clean, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  child.out = "";
  child.err = "";
  child.stdout.on("data", (d) => (child.out += d));
  child.stderr.on("data", (d) => (child.err += d));
  // A command that exits without reading its input (a usage error) closes the pipe: not a failure.
  child.stdin.on("error", () => {});
  child.done = new Promise((resolve) => child.once("close", (code) => resolve(code)));
  return child;
}

async function run(args, env, input = "") {
  const child = start(args, env);
  child.stdin.end(input);
  const code = await child.done;
  return { code, stdout: child.out, stderr: child.err };
}

const lines = (text) => text.split("\n").filter((l) => l !== "");

async function mint(room, rights = "subscribe,publish") {
  const r = await run(["token", "--user", "cli", "--room", room, "--rights", rights, "--secret", devVar("ROOMCAST_SECRET")]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

test("token, publish and tail against the real runtime, with clear failures", async () => {
  const edge = await startEdge();
  const room = roomName("cli");
  try {
    const env = { ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: await mint(room) };
    let r = await run(["publish", room, '{"n":1}'], env);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, "1\n", ""]);
    r = await run(["publish", room, "-"], env, '{"n":2}\n\n"three"\n');
    assert.deepEqual([r.code, lines(r.stdout)], [0, ["2", "3"]]);
    // the API key publishes over HTTP
    r = await run(["publish", room, '{"n":4}'], { ROOMCAST_URL: edge.url, ROOMCAST_API_KEY: apiKey() });
    assert.deepEqual([r.code, r.stdout], [0, "4\n"], r.stderr);

    // tail: the last two stored, then live ones, in order
    const tail = start(["tail", room, "--rewind", "2"], env);
    await until(() => lines(tail.out).length === 2, { what: "the rewound messages" });
    assert.equal((await run(["publish", room, '"live"'], env)).code, 0);
    await until(() => lines(tail.out).length === 3, { what: "the live message" });
    assert.deepEqual(lines(tail.out), ["three", '{"n":4}', "live"]);
    tail.kill();

    // tail --since: history after N, then live, as frames
    const since = start(["tail", room, "--since", "1", "--json"], env);
    await until(() => lines(since.out).length === 4, { what: "the messages after seq 1" });
    assert.deepEqual(
      lines(since.out).map((l) => JSON.parse(l).seq),
      [2, 3, 4, 5],
    );
    since.kill();

    // several rooms on one session socket, each line prefixed with its room
    const other = roomName("cli-b");
    const both = { ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: token("cli", { [room]: ["subscribe"], [other]: ["subscribe", "publish"] }) };
    const many = start(["tail", room, other, "--rewind", "1"], both);
    await until(() => lines(many.out).length === 1, { what: "the last message of the first room" });
    assert.equal((await run(["publish", other, '"b1"'], both)).code, 0);
    await until(() => lines(many.out).length === 2, { what: "a live message of the second room" });
    assert.deepEqual(lines(many.out), [`${room}: live`, `${other}: b1`]);
    many.kill();
    r = await run(["tail", room, other], { ROOMCAST_URL: edge.url });
    assert.deepEqual([r.code, r.stderr.trim()], [1, "roomcast: tail of several rooms needs a token: they share one session socket"]);

    // pipe with the API key: the HTTP API, a batch per message, each with its own id
    const logs = roomName("cli-logs");
    const input = Array.from({ length: 1000 }, (_, i) => `log ${i}`);
    r = await run(
      ["pipe", logs, "--batch-ms", "20", "--batch-bytes", "2000"],
      { ROOMCAST_URL: edge.url, ROOMCAST_API_KEY: apiKey() },
      `${input.join("\n")}\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /1000 lines stored in \d+ messages/);
    const page = await api(edge, "GET", `/rooms/${logs}/history?since=0&limit=1000`);
    assert.ok(page.json.messages.length > 1, "several batches");
    assert.deepEqual(
      page.json.messages.flatMap((m) => m.data.lines),
      input,
    );
    // tail prints a pipe's batches back as lines
    const lastTwo = page.json.messages.slice(-2).flatMap((m) => m.data.lines);
    const logTail = start(["tail", logs, "--rewind", "2"], { ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: await mint(logs) });
    await until(() => lines(logTail.out).length === lastTwo.length, { what: "the last two batches' lines" });
    assert.deepEqual(lines(logTail.out), lastTwo);
    logTail.kill();
    r = await run(["tail", logs, "--rewind", "1"], env);
    assert.equal(r.code, 1, "tail of a room the token does not grant");
    assert.match(r.stderr, /closed: 4403/);

    // failures: a clear reason and a non-zero exit
    r = await run(["publish", room, '"x"'], {});
    assert.deepEqual([r.code, r.stderr.trim()], [1, "roomcast: no URL: pass --url or set ROOMCAST_URL"]);
    r = await run(["publish", room, "hello"], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /DATA is not JSON/);
    r = await run(["publish", room, '"x"'], { ...env, ROOMCAST_TOKEN: `${env.ROOMCAST_TOKEN}x` });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /closed: 4401/);
    r = await run(["tail", room], { ROOMCAST_URL: edge.url, ROOMCAST_API_KEY: apiKey() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tail needs a token/);
    r = await run(["publish", room, '"x"'], { ROOMCAST_URL: edge.url, ROOMCAST_API_KEY: "wrong" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /publish refused: 401/);
    r = await run(["tail"], env);
    assert.equal(r.code, 2, "a usage error");
  } finally {
    await edge.stop();
  }
});

test("pipe: 100,000 lines across a SIGKILL of the runtime, none lost, duplicated or reordered", async () => {
  const persistDir = tempDir("cli-pipe");
  let edge = await startEdge({ persistDir });
  const room = roomName("pipe");
  const N = 100_000;
  const expected = (i) => `line ${String(i).padStart(6, "0")} of the pipe`;
  try {
    const env = { ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: await mint(room, "publish,subscribe") };
    const pipe = start(["pipe", room, "--batch-ms", "50"], env);
    Readable.from(
      (function* () {
        for (let i = 0; i < N; i += 1000) {
          let chunk = "";
          for (let j = i; j < i + 1000; j++) chunk += `${expected(j)}\n`;
          yield chunk;
        }
      })(),
    ).pipe(pipe.stdin);
    const seq = async () => (await api(edge, "GET", `/rooms/${room}/stats`)).json?.seq ?? 0;
    await until(async () => (await seq()) >= 3, { timeoutMs: 30_000, what: "some batches stored" });
    await edge.stop("SIGKILL");
    assert.equal(pipe.exitCode, null, "the pipe was still running when the runtime died");
    edge = await startEdge({ persistDir, port: edge.port });
    assert.equal(await pipe.done, 0, pipe.err);
    assert.match(pipe.err, /reconnecting/, "it went through the crash");

    const got = [];
    for (let since = 0, more = true; more; ) {
      const page = await api(edge, "GET", `/rooms/${room}/history?since=${since}&limit=1000`);
      assert.equal(page.status, 200);
      for (const m of page.json.messages) {
        assert.equal(m.seq, since + 1, "seqs have no holes");
        since = m.seq;
        got.push(...m.data.lines);
      }
      more = page.json.more;
    }
    assert.equal(got.length, N, "every line once");
    const wrong = got.findIndex((line, i) => line !== expected(i));
    assert.equal(wrong, -1, `line ${wrong} is ${got[wrong]}`);
  } finally {
    await edge.stop();
  }
});

test("terminal: only the input right types, a late joiner's first screen is the current one, resize and exit", async () => {
  const edge = await startEdge();
  const room = roomName("term");
  try {
    const env = { ROOMCAST_URL: edge.url, ROOMCAST_TOKEN: await mint(room, "subscribe,publish,presence") };
    const agent = start(["terminal", room, "--keyframe-ms", "300", "--", "sh", "-c", "printf 'hello\\nworld\\n'; exec cat"], env);
    const stored = async () => (await api(edge, "GET", `/rooms/${room}/history?since=0&limit=1000`)).json?.messages ?? [];
    const keyframes = async () => (await stored()).filter((m) => m.data.term === "k");
    await until(async () => (await keyframes()).some((k) => k.data.text.includes("world")), { what: "a keyframe of the output" });
    const agentId = (await stored())[0].from;
    const keys = (id, data) => ({ type: "input", id, to: { clientId: agentId }, data });

    const viewer = await Client.connect(edge, room, { cid: "viewer" }, { token: token("val", { [room]: ["subscribe", "publish"] }) });
    viewer.send(keys("v1", { keys: "nope\r" }));
    assert.equal((await viewer.next((f) => f.id === "v1")).code, "forbidden", "a viewer without the right cannot type");
    const typist = await Client.connect(edge, room, { cid: "typist" }, { token: token("tom", { [room]: ["subscribe", "input"] }) });
    typist.send(keys("t1", { keys: "abc\r" }));
    assert.equal((await typist.next((f) => f.id === "t1")).type, "ack");
    // the tty echoes the line, then cat prints it
    const screen = "hello\nworld\nabc\nabc";
    await until(async () => (await keyframes()).at(-1)?.data.text.trimEnd() === screen, { what: "the typed line on screen" });

    // A new member: its join makes the agent publish the current screen, its first one.
    const late = await Client.connect(edge, room, { cid: "late" }, { token: token("lena", { [room]: ["subscribe"] }) });
    const first = await late.next((f) => f.type === "message" && f.data.term === "k");
    assert.equal(first.data.text.trimEnd(), screen);
    assert.ok(first.seq > late.welcome.seq, "a fresh keyframe, sent for the join");

    typist.send(keys("t2", { resize: [30, 100] }));
    const resized = await late.next((f) => f.type === "message" && f.data.term === "k" && f.data.rows === 30);
    assert.deepEqual([resized.data.cols, resized.data.text.trimEnd()], [100, screen]);

    typist.send(keys("t3", { keys: "\u0004" })); // Ctrl-D: cat ends
    assert.equal(await agent.done, 0, agent.err);
    const all = await stored();
    assert.deepEqual(all.at(-1).data, { term: "x", code: 0 });
    const output = all
      .filter((m) => m.data.term === "o")
      .map((m) => m.data.d)
      .join("");
    assert.match(output, /hello\r\nworld\r\nabc\r\nabc\r\n/);
    assert.ok(!output.includes("nope"), "the refused keys never reached the command");
    for (const c of [viewer, typist, late]) await c.close();
  } finally {
    await edge.stop();
  }
});
