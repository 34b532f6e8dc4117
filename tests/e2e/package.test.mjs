// The npm package as a user gets it: `npm pack` output installed into an empty project, type-
// checked with tsc, and bundled by Vite into an app that runs in Chromium.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { documentedSizes, jsAssets, PAGE_BUDGET, sdkParts } from "../../tools/sdk-size.mjs";
import { countSockets, launchChromium, serveDir } from "../browser.mjs";
import { ALL_RIGHTS, api, ROOT, roomName, startEdge, tempDir, token } from "../harness.mjs";

const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });
let project, edge, browser;

before(async () => {
  // npm pack, then install the tarball into an empty project, as a user would
  const packDir = tempDir("pack");
  const out = npm(["pack", join(ROOT, "sdk"), "--pack-destination", packDir, "--json"], ROOT);
  const [{ filename, files }] = JSON.parse(out);
  assert.ok(files.some((f) => f.path === "dist/index.js") && files.some((f) => f.path === "dist/index.d.ts"), JSON.stringify(files));
  project = tempDir("app");
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  // react from the workspace (as local folders), for the roomcast/react test
  npm(
    [
      "install",
      join(packDir, filename),
      join(ROOT, "node_modules", "react"),
      join(ROOT, "node_modules", "react-dom"),
      join(ROOT, "node_modules", "scheduler"),
    ],
    project,
  );
  [edge, browser] = await Promise.all([startEdge(), launchChromium()]);
});
after(async () => {
  await Promise.all([edge?.stop(), browser?.close()]);
});

/**
 * A React page of the app: `<name>.html` loading `<name>-main.js` (`source`), built by Vite in
 * development mode (StrictMode double-mounts effects only in development), and served.
 */
async function servedDevPage(name, source) {
  const html = `<!doctype html><title>${name}</title><div id="root"></div><script type="module" src="/${name}-main.js"></script>`;
  writeFileSync(join(project, `${name}.html`), html);
  writeFileSync(join(project, `${name}-main.js`), source);
  const { build } = await import(join(ROOT, "node_modules", "vite", "dist", "node", "index.js"));
  await build({
    root: project,
    logLevel: "error",
    mode: "development",
    define: { "process.env.NODE_ENV": JSON.stringify("development") },
    build: { target: "es2022", outDir: `dist-${name}`, minify: false, rollupOptions: { input: join(project, `${name}.html`) } },
  });
  return serveDir(join(project, `dist-${name}`), `${name}.html`);
}

test("what a page loads (the packed dist/index.js) fits its gzipped budget", () => {
  const { bundle } = sdkParts();
  const packed = jsAssets(join(project, "node_modules", "roomcast", "dist")).files.find((f) => f.file === "index.js");
  assert.deepEqual(packed, { file: "index.js", ...bundle }, "the package ships the file the build measured");
  assert.ok(bundle.gzip <= PAGE_BUDGET, `dist/index.js is ${bundle.gzip} bytes gzipped, budget ${PAGE_BUDGET}`);
});

test("the packed package type-checks with tsc", () => {
  writeFileSync(
    join(project, "check.ts"),
    `
import { connect, RoomcastError, type Clock, type ErrorEvent, type GapEvent, type Message, type StatusEvent } from "roomcast";
const room = connect({ url: "wss://example.com", room: "chat:lobby", token: async () => "t", echo: true, pingIntervalMs: 5000 });
const off: () => void = room.on("message", (m: Message) => console.log(m.seq, m.data));
room.on("status", (s: StatusEvent) => s.state === "reconnecting" && console.log(s.delayMs));
room.on("presence", (p) => p.members.map((m) => m.connections));
room.on("error", (e: ErrorEvent) => {
  if (e.code === "out_of_order") console.log(e.expected, e.received);
  else if (e.code === "bad_frame") console.log(e.frame?.length);
});
room.on("gap", (g: GapEvent) => g.reason === "ahead" && console.log(g.since));
const seq: Promise<number> = room.publish({ text: "hi" });
void room.sendTo({ user: "bob" }, 1);
const n: number = room.lastSeq;
off(); room.close(); void seq; void n;
// issue #14: injectable WebSocket and clock, the token failure bound, errors that say why
const clock: Clock = { now: () => Date.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };
const node = connect({ url: "wss://example.com", room: "r", WebSocket, clock, maxTokenFailures: Infinity, minReconnectDelayMs: 1000 });
node.on("error", (e) => { if (e.code === "token_failed" || e.code === "host_error") console.log(e.cause); });
node.publish(1).catch((e: unknown) => {
  if (e instanceof RoomcastError) {
    const code: string = e.code;
    const close: number | undefined = e.closeCode;
    console.log(code, close, e.message, e.id, e.cause);
  }
});
// issue #23: one socket for many rooms, each room typed as connect()'s
import { createClient, type Client, type WatchEvent } from "roomcast";
const client: Client = createClient({ url: "wss://example.com", token: async () => "t" });
const general = client.join<{ text: string }>("chat:general", { rewind: 50 });
general.on("message", (m) => console.log(m.data.text));
general.on("read", (r) => console.log(r.seq, r.unread));
general.markRead(general.lastSeq);
const unread: number = general.unread;
client.watch(["chat:random"]);
client.on("watch", (w: WatchEvent) => console.log(w.room, w.unread));
client.rooms().forEach((r) => console.log(r.room, r.readSeq, unread));
client.reconnect();
general.leave();
client.close();
`,
  );
  writeFileSync(
    join(project, "bad-clock.ts"),
    `import { connect } from "roomcast";\nconnect({ url: "u", room: "r", clock: { now: () => 0 } });\n`,
  );
  writeFileSync(join(project, "bad.ts"), `import { connect } from "roomcast";\nconnect({ room: "x" });\n`);
  const tsc = join(ROOT, "node_modules", ".bin", "tsc");
  const flags = [
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
  ];
  execFileSync(tsc, [...flags, "check.ts"], { cwd: project, encoding: "utf8" });
  // and the types really check: a missing url is an error
  assert.throws(
    () => execFileSync(tsc, [...flags, "bad.ts"], { cwd: project, encoding: "utf8", stdio: "pipe" }),
    (e) => /Property 'url' is missing/.test(e.stdout),
  );
  // a clock must have all three members
  assert.throws(
    () => execFileSync(tsc, [...flags, "bad-clock.ts"], { cwd: project, encoding: "utf8", stdio: "pipe" }),
    (e) => /setTimeout/.test(e.stdout),
  );
});

const TSC_FLAGS = [
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
];
/** tsc --strict on one file of the project: its output, and whether it passed. */
function tsc(file) {
  try {
    return {
      ok: true,
      out: execFileSync(join(ROOT, "node_modules", ".bin", "tsc"), [...TSC_FLAGS, file], { cwd: project, encoding: "utf8", stdio: "pipe" }),
    };
  } catch (e) {
    return { ok: false, status: e.status, out: e.stdout };
  }
}

test("typed: connect<TData, TMeta, TBroadcast> types publish, broadcast, history, setPresence, events and the React hooks under tsc --strict", () => {
  writeFileSync(
    join(project, "typed.ts"),
    `
import { connect, RoomcastError, type BroadcastEvent, type HistoryPage, type Member, type Message, type PresenceEvent, type Room } from "roomcast";
import { useClient, useMessages, usePresence, useRoom, useUnread, type MessagesState } from "roomcast/react";
interface Chat { text: string }
interface Meta { name: string; cursor?: [number, number] }
type Typing = { typing: boolean };
const room: Room<Chat, Meta, Typing> = connect<Chat, Meta, Typing>({ url: "wss://example.com", room: "chat:lobby", rewind: 50, debug: true });
room.on("message", (m) => { const text: string = m.data.text; const id: string | undefined = m.id; console.log(text, id, m.seq); });
room.on("broadcast", (b: BroadcastEvent<Typing>) => { const on: boolean = b.data.typing; console.log(on, b.from, b.user, b.ts); });
room.on("presence", (p: PresenceEvent<Meta>) => p.updated.map((m) => m.meta?.name.toUpperCase()));
const page: Promise<HistoryPage<Chat>> = room.history({ limit: 20, before: 100 });
page.then(({ messages, more }) => messages.map((m: Message<Chat>) => m.data.text.length + Number(more)));
void room.history();
void room.history({ since: 3 });
const seq: Promise<number> = room.publish({ text: "hi" });
const sent: Promise<void> = room.broadcast({ typing: true });
const set: Promise<void> = room.setPresence({ name: "Ann", cursor: [1, 2] });
const names: string[] = room.members().map((m: Member<Meta>) => m.meta?.name ?? m.user);
set.catch((e: unknown) => e instanceof RoomcastError && e.code === "too_large");
// two parameters, as DESIGN.md writes it: broadcasts carry TData
const simple = connect<Chat, Meta>({ url: "wss://example.com", room: "r", logger: (kind, detail) => console.log(kind, detail) });
void simple.broadcast({ text: "typing" });
// no parameters: unknown payloads, a record for meta
const loose = connect({ url: "wss://example.com", room: "r" });
void loose.publish(42); void loose.broadcast([1]); void loose.setPresence({ anything: [1] });
loose.on("message", (m) => console.log(m.data));
export function useChat() {
  const r = useRoom<Chat, Meta>({ url: "wss://example.com", room: "r", echo: true });
  const members = usePresence(r);
  const first: string | undefined = members[0]?.meta?.name;
  const list: MessagesState<Chat> = useMessages(r, { limit: 30 });
  const texts: string[] = list.messages.map((m) => m.data.text);
  const older: Promise<void> = list.loadOlder();
  return [first, texts, list.more, list.loading, older] as const;
}
// issue #23: one socket, many rooms, unread counts
export function useChannel(name: string) {
  const client = useClient({ url: "wss://example.com", token: () => "t" });
  const channel = useRoom<Chat, Meta>(client, name, { rewind: 50 });
  const unread: number = useUnread(channel);
  const list: MessagesState<Chat> = useMessages(channel);
  channel?.markRead(channel.lastSeq);
  return [unread, list.messages.length] as const;
}
const rate: number | undefined = room.limits.broadcastsPerSec;
const max: number = room.limits.maxFrameBytes;
void seq; void sent; void names; void rate; void max;
`,
  );
  const typed = tsc("typed.ts");
  assert.ok(typed.ok, typed.out);
  // the same room publishing the wrong payload, or setting the wrong meta, does not type-check
  writeFileSync(
    join(project, "wrong-payload.ts"),
    `import { connect } from "roomcast";
interface Chat { text: string }
interface Meta { name: string }
const room = connect<Chat, Meta>({ url: "wss://example.com", room: "r" });
void room.publish(42);
void room.publish({ txt: "typo" });
void room.broadcast({ text: 1 });
void room.setPresence({ name: 7 });
room.on("message", (m) => m.data.body);
`,
  );
  const wrong = tsc("wrong-payload.ts");
  assert.equal(wrong.ok, false, "tsc must refuse wrong payloads");
  assert.equal(wrong.status, 2, wrong.out);
  const errors = wrong.out.split("\n").filter((l) => l.includes("error TS"));
  assert.equal(errors.length, 5, wrong.out);
  assert.match(
    wrong.out,
    /wrong-payload\.ts\(5,\d+\): error TS2345: Argument of type 'number' is not assignable to parameter of type 'Chat'/,
  );
  assert.match(wrong.out, /wrong-payload\.ts\(6,.*'txt' does not exist in type 'Chat'/);
  assert.match(wrong.out, /wrong-payload\.ts\(7,.*Type 'number' is not assignable to type 'string'/);
  assert.match(wrong.out, /wrong-payload\.ts\(8,.*Type 'number' is not assignable to type 'string'/);
  assert.match(wrong.out, /wrong-payload\.ts\(9,.*Property 'body' does not exist on type 'Chat'/);
});

test("a Vite-built app using the package runs in Chromium", async () => {
  const room = roomName("vite");
  const t = token("vite-user", { [room]: ALL_RIGHTS });
  writeFileSync(
    join(project, "index.html"),
    `<!doctype html><title>vite app</title><p id="out">waiting</p><script type="module" src="/main.js"></script>`,
  );
  writeFileSync(
    join(project, "main.js"),
    `
import { connect } from "roomcast";
const room = connect({ url: ${JSON.stringify(edge.wsUrl)}, room: ${JSON.stringify(room)}, token: ${JSON.stringify(t)} });
room.on("message", (m) => { document.getElementById("out").textContent = "got " + m.data.text; });
room.on("status", (s) => { document.body.dataset.state = s.state; });
`,
  );
  const { build } = await import(join(ROOT, "node_modules", "vite", "dist", "node", "index.js"));
  await build({ root: project, logLevel: "error", build: { target: "es2022", outDir: "dist" } });
  const dist = join(project, "dist");
  assert.ok(readdirSync(join(dist, "assets")).some((f) => f.endsWith(".js")));
  const server = await serveDir(dist, "index.html");
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.state === "open");
    await api(edge, "POST", `/rooms/${room}/messages`, { data: { text: "hello vite" } });
    await page.waitForFunction(() => document.getElementById("out").textContent === "got hello vite");
    await page.close();
  } finally {
    await server.close();
  }
});

test("roomcast/react under StrictMode: one connection, live state and members", async () => {
  const room = roomName("react");
  const t = token("rita", { [room]: ALL_RIGHTS });
  const server = await servedDevPage(
    "react",
    `
import { StrictMode, createElement as h, useEffect } from "react";
import { createRoot } from "react-dom/client";
import { flushSync } from "react-dom";
import { useRoom, usePresence, useConnectionState } from "roomcast/react";
function App() {
  useEffect(() => { window.effectRuns = (window.effectRuns ?? 0) + 1; }, []);
  const room = useRoom({ url: ${JSON.stringify(edge.wsUrl)}, room: ${JSON.stringify(room)}, token: () => ${JSON.stringify(t)} });
  const state = useConnectionState(room);
  const members = usePresence(room);
  return h("p", { id: "app", "data-state": state }, state + ": " + members.map((m) => m.user).join(","));
}
const root = createRoot(document.getElementById("root"));
root.render(h(StrictMode, null, h(App)));
// Unmount and mount again in one task, as hot reload does: the connection must survive it.
window.remount = () => {
  flushSync(() => root.render(h(StrictMode, null, null)));
  flushSync(() => root.render(h(StrictMode, null, h(App))));
};
`,
  );
  try {
    const page = await browser.newPage();
    await countSockets(page);
    await page.goto(server.url);
    await page.waitForFunction(() => document.getElementById("app")?.dataset.state === "open");
    await page.waitForFunction(() => document.getElementById("app").textContent === "open: rita");
    assert.equal(await page.evaluate(() => window.effectRuns), 2, "StrictMode ran the effects twice");
    assert.equal(await page.evaluate(() => window.sockets.length), 1, "StrictMode's double mount did not open a second connection");
    await page.evaluate(() => window.remount());
    await page.waitForFunction(() => document.getElementById("app")?.textContent === "open: rita");
    assert.equal(await page.evaluate(() => window.sockets.length), 1, "a remount in one task keeps the connection");
    await page.close();
  } finally {
    await server.close();
  }
});

test("roomcast/react with one client: useClient, useRoom(client, room) and useUnread on one socket under StrictMode", async () => {
  const [a, b] = [roomName("react-a"), roomName("react-b")];
  const t = token("rhea", { [a]: ALL_RIGHTS, [b]: ALL_RIGHTS });
  const server = await servedDevPage(
    "client",
    `
import { StrictMode, createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";
import { flushSync } from "react-dom";
import { useClient, useConnectionState, useRoom, useUnread } from "roomcast/react";
function Channel({ client, name, id }) {
  const room = useRoom(client, name);
  const state = useConnectionState(room);
  const unread = useUnread(room);
  window.rooms[id] = room;
  return h("li", { id }, state + " " + unread);
}
function App() {
  const client = useClient({ url: ${JSON.stringify(edge.wsUrl)}, token: () => ${JSON.stringify(t)} });
  const [showB, setShowB] = useState(true);
  window.setShowB = (v) => flushSync(() => setShowB(v));
  if (!client) return h("p", { id: "none" }, "no client yet");
  return h("ul", null, h(Channel, { client, name: ${JSON.stringify(a)}, id: "a" }), showB ? h(Channel, { client, name: ${JSON.stringify(b)}, id: "b" }) : null);
}
window.rooms = {};
const root = createRoot(document.getElementById("root"));
root.render(h(StrictMode, null, h(App)));
window.remount = () => {
  flushSync(() => root.render(h(StrictMode, null, null)));
  flushSync(() => root.render(h(StrictMode, null, h(App))));
};
`,
  );
  const shows = async (page, id, text) => {
    try {
      await page.waitForFunction(([id, text]) => document.getElementById(id)?.textContent === text, [id, text], { timeout: 10_000 });
    } catch (e) {
      assert.equal(await page.evaluate((id) => document.getElementById(id)?.textContent, id), text, e.message);
    }
  };
  const publish = (room, n) =>
    api(
      edge,
      "POST",
      `/rooms/${room}/messages`,
      Array.from({ length: n }, (_, i) => ({ data: { i } })),
    );
  try {
    const page = await browser.newPage();
    await countSockets(page);
    await page.goto(server.url);
    await shows(page, "a", "open 0");
    await shows(page, "b", "open 0");
    assert.deepEqual(
      await page.evaluate(() => window.sockets),
      ["/session/ws"],
      "StrictMode's double mount: one socket for the client and both rooms",
    );
    assert.equal((await publish(a, 2)).status, 200);
    assert.equal((await publish(b, 1)).status, 200);
    await shows(page, "a", "open 2");
    await shows(page, "b", "open 1");
    // a read position taken on the room: this device's count follows at once
    await page.evaluate(() => window.rooms.a.markRead(window.rooms.a.lastSeq));
    await shows(page, "a", "open 0");
    await shows(page, "b", "open 1");
    // unmounting B leaves it; its unread count while away comes back with the next join
    await page.evaluate(() => window.setShowB(false));
    await page.waitForFunction(() => !document.getElementById("b"));
    assert.equal((await publish(b, 2)).status, 200);
    await page.evaluate(() => window.setShowB(true));
    await shows(page, "b", "open 3");
    // a remount in one task (hot reload) keeps the client's socket and the read positions
    await page.evaluate(() => window.remount());
    await shows(page, "a", "open 0");
    await shows(page, "b", "open 3");
    assert.deepEqual(await page.evaluate(() => window.sockets), ["/session/ws"], "no second socket after leave, rejoin and remount");
    await page.close();
  } finally {
    await server.close();
  }
});

test("roomcast/react useMessages: the latest page, live messages appended, duplicates (a rewind) dropped, loadOlder() to the start", async () => {
  const room = roomName("react-messages");
  const t = token("rosa", { [room]: ALL_RIGHTS });
  const body = Array.from({ length: 12 }, (_, i) => ({ data: { n: i + 1 } }));
  assert.equal((await api(edge, "POST", `/rooms/${room}/messages`, body)).status, 200);
  const server = await servedDevPage(
    "messages",
    `
import { StrictMode, createElement as h } from "react";
import { createRoot } from "react-dom/client";
import { useMessages, useRoom } from "roomcast/react";
function App() {
  // rewind: the last three also arrive as live messages, and must not show twice
  const room = useRoom({ url: ${JSON.stringify(edge.wsUrl)}, room: ${JSON.stringify(room)}, token: () => ${JSON.stringify(t)}, echo: true, rewind: 3 });
  const { messages, more, loading, loadOlder } = useMessages(room, { limit: 5 });
  window.loadOlder = loadOlder;
  window.publish = (data) => room.publish(data);
  return h("p", { id: "list", "data-more": String(more), "data-loading": String(loading) }, messages.map((m) => m.seq + ":" + m.data.n).join(","));
}
createRoot(document.getElementById("root")).render(h(StrictMode, null, h(App)));
`,
  );
  const list = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `${from + i}:${from + i}`).join(",");
  const shows = async (page, text, more) => {
    try {
      await page.waitForFunction(
        ([text, more]) => {
          const p = document.getElementById("list");
          return p?.textContent === text && p.dataset.more === more && p.dataset.loading === "false";
        },
        [text, more],
        { timeout: 10_000 },
      );
    } catch (e) {
      const now = await page.evaluate(() => {
        const p = document.getElementById("list");
        return [p?.textContent, p?.dataset.more];
      });
      assert.deepEqual(now, [text, more], e.message);
    }
  };
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    await shows(page, list(8, 12), "true");
    await api(edge, "POST", `/rooms/${room}/messages`, { data: { n: 13 } });
    await shows(page, list(8, 13), "true");
    assert.equal(await page.evaluate(() => window.publish({ n: 14 })), 14);
    await shows(page, list(8, 14), "true");
    await page.evaluate(() => window.loadOlder());
    await shows(page, list(3, 14), "true");
    await page.evaluate(() => window.loadOlder());
    await shows(page, list(1, 14), "false");
    await page.evaluate(() => window.loadOlder());
    await shows(page, list(1, 14), "false");
    await page.close();
  } finally {
    await server.close();
  }
});

test("examples/react builds against the package and chats in Chromium", async () => {
  const room = roomName("chat:example");
  const dir = join(project, "example");
  mkdirSync(dir, { recursive: true });
  for (const f of ["index.html", "main.js"]) copyFileSync(join(ROOT, "examples", "react", f), join(dir, f));
  const { build } = await import(join(ROOT, "node_modules", "vite", "dist", "node", "index.js"));
  await build({
    root: dir,
    logLevel: "error",
    configFile: join(ROOT, "examples", "react", "vite.config.js"),
    define: { "import.meta.env.VITE_ROOMCAST_URL": JSON.stringify(edge.url), "import.meta.env.VITE_ROOMCAST_ROOM": JSON.stringify(room) },
    build: { outDir: join(dir, "dist") },
  });
  const dist = join(dir, "dist");
  // The app's bundle (React, ReactDOM, roomcast/react, roomcast) is the size README.md and
  // sdk/README.md state, within 2%.
  const app = jsAssets(join(dist, "assets"));
  for (const file of ["README.md", "sdk/README.md"]) {
    const stated = documentedSizes(file).react;
    assert.ok(stated, `${file} states the React app's size`);
    for (const k of ["raw", "gzip"])
      assert.ok(
        Math.abs(stated[k] - app[k]) <= app[k] * 0.02,
        `${file}: the React app is ${app[k]} bytes ${k}, the file says ${stated[k]}`,
      );
  }
  const server = await serveDir(dist, "index.html");
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => document.getElementById("state")?.textContent.startsWith("open · 1 here"));
    await page.fill("#text", "hello from the example");
    await page.press("#text", "Enter");
    await page.waitForFunction(() => document.getElementById("messages").textContent.includes("hello from the example"));
    await page.close();
  } finally {
    await server.close();
  }
});
