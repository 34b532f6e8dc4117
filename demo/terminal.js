// A shared terminal (`roomcast terminal ROOM -- CMD`) in xterm.js. The room holds the command's
// output as ordered messages: `{term:"o", d}` output, `{term:"k", rows, cols, screen}` keyframes
// (the whole screen), `{term:"x", code}` the exit. The page draws the newest keyframe and the
// output after it, so a late joiner sees the current screen at once. With the input right (the
// "type" box asks /dev/token for it) keys go to the agent as `input` frames, and the terminal
// follows this window's size; without it the room refuses them, and the page only watches.
// Only the agent's user (`?agent=`, default `demo-agent`, the user `npm run demo:terminal` runs it
// as) draws the terminal and gets the keys: a client id is bound to its user, but any member with
// `publish` can post a `term` message, and a page that took the agent to be whoever posted last
// would send that member what its typist types next.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { connect } from "roomcast";

const $ = (id) => document.getElementById(id);
const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 0 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open($("screen"));
const query = new URLSearchParams(location.search);
const agentUser = query.get("agent") ?? "demo-agent";
let room;
let agent; // the agent's client id: the `from` of the terminal's messages
let size = [24, 80];
let applied = 0; // the last seq drawn
let early; // live messages that came while the history was read, drawn after it

/** Draws one stored message of the terminal (in seq order). */
function draw(m) {
  if (m.seq <= applied || m.user !== agentUser || typeof m.data?.term !== "string") return;
  applied = m.seq;
  agent = m.from;
  const d = m.data;
  if (d.term === "k") {
    size = [d.rows, d.cols];
    term.reset();
    scale();
    term.write(d.screen);
  } else if (d.term === "o") term.write(d.d);
  else if (d.term === "x") term.write(`\r\n[the command exited with ${d.code}]\r\n`);
}

/** A watcher's terminal is the agent's size, its font shrunk until it fits the window's width. */
function scale() {
  const [rows, cols] = size;
  if (!$("type").checked) {
    const width = $("screen").clientWidth;
    term.options.fontSize = Math.max(6, Math.min(14, Math.floor(width / (cols * 0.62))));
  } else term.options.fontSize = 14;
  term.resize(cols, rows);
}

/** With the input right, the agent's terminal follows this window. */
function follow() {
  if (!$("type").checked || !agent) return scale();
  const want = fit.proposeDimensions();
  if (want && (want.rows !== size[0] || want.cols !== size[1])) {
    room.sendInput({ clientId: agent }, { resize: [Math.min(want.rows, 200), Math.min(want.cols, 400)] }).catch(refused);
  }
}

function refused(e) {
  $("mode").textContent = e.code === "forbidden" ? "read-only: the room refused the keys" : `not sent: ${e.code}`;
}

async function token(roomName, input) {
  const rights = input ? "subscribe,presence,input" : "subscribe,presence";
  const res = await fetch(
    `/dev/token?user=viewer-${Math.random().toString(36).slice(2, 8)}&room=${encodeURIComponent(roomName)}&rights=${rights}`,
  );
  return (await res.json()).token;
}

function open(roomName) {
  room?.close();
  applied = 0;
  agent = undefined;
  early = [];
  term.reset();
  const input = $("type").checked;
  $("mode").textContent = input ? "typing" : "read-only";
  room = connect({ url: location.origin, room: roomName, token: () => token(roomName, input) });
  room.on("status", async (s) => {
    $("status").textContent = s.state;
    $("status").dataset.state = s.state;
    if (s.state !== "open" || !early) return;
    // The newest keyframe and what followed it, then the live ones that came meanwhile.
    const page = await room.history({ limit: 200 }).catch(() => ({ messages: [] }));
    const last = page.messages.findLastIndex((m) => m.user === agentUser && m.data?.term === "k");
    for (const m of [...page.messages.slice(Math.max(last, 0)), ...early]) draw(m);
    early = undefined;
    follow();
  });
  room.on("message", (m) => (early ? early.push(m) : draw(m)));
  window.room = room;
}

// Keys go to the room whatever the box says: without the input right the room refuses them.
term.onData((keys) => {
  if (agent) room.sendInput({ clientId: agent }, { keys }).catch(refused);
});
new ResizeObserver(() => follow()).observe($("screen"));
$("room").addEventListener("change", (e) => {
  if (e.target.reportValidity()) open(e.target.value);
});
$("type").addEventListener("change", () => open($("room").value));
$("room").value = query.get("room") ?? $("room").value;
$("type").checked = query.get("type") === "1";
open($("room").value);
window.term = term;
