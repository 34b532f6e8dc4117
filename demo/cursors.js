// Live cursors: everyone's pointer on one board, over ephemeral broadcasts.
//
// - Each move is `room.broadcast({ x, y })` (0..1 of the board, so windows of any size agree):
//   never stored, no seq, no history, only to who is connected now. At most MAX_RATE a second
//   per tab (the latest position wins; the last one is always sent), and never more than the
//   room's broadcast rate (`limits.broadcastsPerSec` in the welcome); a `rate_limited` refusal
//   halves the rate, which then creeps back up.
// - Cursors are keyed by client id (one per tab), labelled with the member's name, drawn once per
//   animation frame whatever the number of updates. The name tag sits right of and below the
//   arrow's tip, and goes to the left of or above it where it would cross the board's right or
//   bottom edge, so it always shows whole (see tagPlace).
// - A cursor goes when its tab says so (pointer left the board, tab closed: `{ gone: true }`),
//   and when presence says its user left or has no connection left, so nothing lingers.
import { connect } from "roomcast";
import { devToken } from "./identity.js";

const $ = (id) => document.getElementById(id);
const MAX_RATE = 60; // updates per second we send at most
const MIN_RATE = 5;

let room;
let cap = MAX_RATE; // the most we may send: MAX_RATE or the room's broadcast rate, if lower
let rate = MAX_RATE; // what we send at now (lowered by rate_limited refusals)
let limitedAt = 0;
let latest = null; // the position not yet sent
let lastSentAt = -Infinity;
let sendTimer = null;
const sentTimes = [];
const receivedTimes = [];
const cursors = new Map(); // client id -> { el, label, size, user, x, y }
const dirty = new Set();
let frameRequested = false;
let members = new Map(); // user -> Member
let boardSize = { w: 1, h: 1 };

const displayName = (user) => members.get(user)?.meta?.name ?? user;
function color(user) {
  let h = 0;
  for (const ch of user) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 70% 42%)`;
}

// --- sending --------------------------------------------------------------------------------

function queue(data) {
  latest = data;
  if (sendTimer === null) sendTimer = setTimeout(flush, Math.max(0, lastSentAt + 1000 / rate - performance.now()));
}

function flush() {
  sendTimer = null;
  if (latest === null || room?.state !== "open") return; // ephemeral: nothing is kept for later
  const data = latest;
  latest = null;
  lastSentAt = performance.now();
  sentTimes.push(lastSentAt);
  room.broadcast(data).catch((err) => {
    if (err?.code === "rate_limited") {
      rate = Math.max(MIN_RATE, Math.floor(rate / 2));
      limitedAt = performance.now();
    }
  });
}

const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10_000) / 10_000;

function onMove(e) {
  const r = $("board").getBoundingClientRect();
  queue({ x: round((e.clientX - r.left) / r.width), y: round((e.clientY - r.top) / r.height) });
}

// --- receiving and drawing ------------------------------------------------------------------

function cursorFor(from, user) {
  let c = cursors.get(from);
  if (c) return c;
  const el = document.createElement("div");
  el.className = "cursor";
  el.dataset.from = from;
  el.dataset.user = user;
  const fill = color(user);
  el.innerHTML = `<svg viewBox="0 0 18 18" aria-hidden="true"><path d="M1 1v15l4-4 3 6 2.5-1.2-3-5.8H13z" stroke="#fff" stroke-width="1.2"/></svg><span></span>`;
  el.querySelector("path").setAttribute("fill", fill);
  const label = el.querySelector("span");
  label.style.background = fill;
  $("board").append(el);
  c = { el, label, size: { w: 0, h: 0 }, user, x: 0, y: 0 };
  setName(c, displayName(user));
  cursors.set(from, c);
  return c;
}

/** Sets a cursor's name tag and measures it once (drawing then reads no layout). */
function setName(c, name) {
  c.label.textContent = name;
  c.size = { w: c.label.offsetWidth, h: c.label.offsetHeight };
}

const TAG_GAP = { x: 12, y: 16 }; // the tag's place right of and below the tip (style.css)

/**
 * Where a name tag of `size` goes, relative to the tip at `at` on a board `board` wide and high,
 * on one axis: after the tip (`gap` past it) if it fits before the board's end, else before the
 * tip (ending 2 px short of it) if it fits there, else as far toward the start as it must go to
 * end at the board's end, never before the board's start.
 */
function tagPlace(at, size, board, gap) {
  if (at + gap + size <= board) return gap;
  if (at - 2 - size >= 0) return -2 - size;
  return Math.max(-at, board - size - at);
}

function removeCursor(from) {
  const c = cursors.get(from);
  if (!c) return;
  c.el.remove();
  cursors.delete(from);
  dirty.delete(c);
}

function draw() {
  frameRequested = false;
  for (const c of dirty) {
    const [x, y] = [c.x * boardSize.w, c.y * boardSize.h];
    c.el.style.transform = `translate(${x.toFixed(1)}px, ${y.toFixed(1)}px)`;
    c.label.style.left = `${tagPlace(x, c.size.w, boardSize.w, TAG_GAP.x).toFixed(1)}px`;
    c.label.style.top = `${tagPlace(y, c.size.h, boardSize.h, TAG_GAP.y).toFixed(1)}px`;
    c.el.dataset.x = c.x;
    c.el.dataset.y = c.y;
  }
  dirty.clear();
}

function redraw(c) {
  dirty.add(c);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(draw);
  }
}

function onBroadcast(b) {
  receivedTimes.push(performance.now());
  if (b.from === room.clientId) return;
  if (b.data?.gone === true) return removeCursor(b.from);
  const { x, y } = b.data ?? {};
  if (!Number.isFinite(x) || !Number.isFinite(y)) return; // not a cursor update
  const c = cursorFor(b.from, b.user);
  c.x = Math.min(1, Math.max(0, x));
  c.y = Math.min(1, Math.max(0, y));
  redraw(c);
}

function onPresence(p) {
  members = new Map(p.members.map((m) => [m.user, m]));
  const gone = new Set(p.left ?? []);
  for (const [from, c] of cursors) {
    // Gone for good, or their last connection closed (the grace period runs): remove the cursor.
    if (gone.has(c.user) || members.get(c.user)?.connections === 0) removeCursor(from);
    else if (c.label.textContent !== displayName(c.user)) {
      setName(c, displayName(c.user));
      redraw(c);
    }
  }
  const here = p.members.filter((m) => m.connections > 0);
  $("here").textContent = here.length;
  $("members").replaceChildren(
    ...here.map((m) => {
      const li = document.createElement("li");
      li.textContent = m.meta?.name ?? m.user;
      li.style.color = color(m.user);
      return li;
    }),
  );
}

function onStatus(s) {
  const el = $("status");
  el.dataset.state = s.state;
  el.textContent = s.state === "closed" && s.reason ? `closed: ${s.reason}` : s.state;
  if (s.state === "open") {
    const roomRate = room.limits.broadcastsPerSec; // from this connection's welcome
    cap = Number.isFinite(roomRate) && roomRate > 0 ? Math.min(MAX_RATE, roomRate) : MAX_RATE;
    rate = Math.min(rate, cap);
  } else {
    // Positions heard before a drop are stale: they come back with the next move.
    for (const from of [...cursors.keys()]) removeCursor(from);
  }
}

// --- wiring ---------------------------------------------------------------------------------

function join(name, roomName) {
  room?.close();
  for (const from of [...cursors.keys()]) removeCursor(from);
  const clientId = sessionStorage.getItem("roomcast-cursors-cid") ?? `tab-${crypto.randomUUID().slice(0, 8)}`;
  sessionStorage.setItem("roomcast-cursors-cid", clientId);
  room = connect({ url: location.origin, room: roomName, clientId, token: () => devToken(name, roomName) });
  room.on("status", onStatus);
  room.on("presence", onPresence);
  room.on("broadcast", onBroadcast);
  $("join").hidden = true;
  $("cursors").hidden = false;
  const board = $("board");
  boardSize = { w: board.clientWidth, h: board.clientHeight };
  window.room = room; // for the tests and the curious
}

$("join").addEventListener("submit", (e) => {
  // Only reached when the form is valid: the browser refuses a bad name with its own message.
  e.preventDefault();
  join($("name").value, $("room").value);
});

$("board").addEventListener("pointermove", onMove);
$("board").addEventListener("pointerleave", () => queue({ gone: true }));
addEventListener("pagehide", () => {
  if (room?.state === "open") room.broadcast({ gone: true }).catch(() => {});
});
new ResizeObserver(([entry]) => {
  boardSize = { w: entry.contentRect.width, h: entry.contentRect.height };
  for (const c of cursors.values()) redraw(c);
}).observe($("board"));

setInterval(() => {
  const now = performance.now();
  for (const times of [sentTimes, receivedTimes]) while (times.length && times[0] < now - 1000) times.shift();
  // Back up towards the cap after two quiet seconds without a rate_limited refusal.
  if (rate < cap && now - limitedAt > 2000) rate = Math.min(cap, rate + 5);
  $("sent").textContent = sentTimes.length;
  $("received").textContent = receivedTimes.length;
  $("rate").textContent = rate;
}, 250);

const params = new URLSearchParams(location.search);
$("name").value = params.get("name") ?? `guest-${Math.random().toString(36).slice(2, 6)}`;
$("room").value = params.get("room") ?? $("room").value;
