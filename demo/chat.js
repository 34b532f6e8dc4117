// The chat demo: the SDK as an app uses it. Tokens come from the development-only endpoint;
// a real app gets them from its own backend.
//
// - Arriving shows the room's last REWIND messages (`connect({ rewind })`): they come as ordinary
//   `message` events, before any live one.
// - Scrolling to the top (or the "load older" button) pages back with `room.history({ before })`.
// - Your own messages show at once as "sending…" and turn "✓" when the room stored them. Echo is
//   on, so a reload (a fresh connection with the same client id) also rewinds your own messages;
//   each message carries a random `nonce` that ties the echo to the line already on screen.
// - "… is typing" travels as ephemeral broadcasts (see TYPING below).
import { connect } from "roomcast";
import { cleanName, devToken, userId } from "./identity.js";

const $ = (id) => document.getElementById(id);
const REWIND = 50; // messages shown on arrival
const PAGE = 50; // older messages per page
const MAX_MESSAGES = 500; // bounded DOM while following live messages
const NEAR_EDGE_PX = 48; // "at the top" / "at the bottom" of the message list

// TYPING. Who is typing is sent as `room.broadcast({ typing: true })`, not as presence state:
// - It is a transient signal nobody needs later. Broadcasts are never stored, never replayed and
//   not sent to members who join afterwards; a presence change is kept in the member list (and
//   saved with the connection), which a typing flag has no use for.
// - `room.setPresence(meta)` replaces the connection's whole meta (here the display name from
//   the token), so every keystroke would have to resend it; presence frames are also coalesced per
//   user (a few per second), which delays "stopped typing" for no gain.
// - Broadcasts reach every member whatever their rights; presence only those with `presence`.
// The sender renews "typing" at most every TYPING_RENEW_MS while keys are pressed and says
// `typing: false` when the field is cleared or left; receivers forget a typist after
// TYPING_TTL_MS without a renewal (a closed tab, a lost broadcast), when their message arrives,
// or when they leave the room.
const TYPING_RENEW_MS = 2_000;
const TYPING_TTL_MS = 5_000;

let room;
let myUser = ""; // our user id (identity.js: derived from the name)
let myName = ""; // the name we typed, as others see it
let countdown;
let typingSentAt = 0; // when we last said we are typing (0: we are not)
const bySeq = new Map(); // seq -> <li> of every stored message on screen
const pending = new Map(); // nonce -> <li> of our own messages not yet seen stored
const typists = new Map(); // user -> timer that forgets them
const members = new Map(); // user -> Member, for display names
let older = "idle"; // idle | loading | done (no older messages in the room)

const time = (ts) => new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
/** A user's name: from presence (the token's meta) while known, else the one their message carries. */
const displayName = (user, carried) => members.get(user)?.meta?.name ?? (typeof carried === "string" ? carried : user);
const scroller = () => $("scroll");
const nearBottom = () => {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_EDGE_PX;
};
const toBottom = () => {
  const s = scroller();
  s.scrollTop = s.scrollHeight;
};

function line({ user, name, text, ts, cls }) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  const who = document.createElement("b");
  who.textContent = displayName(user, name);
  const when = document.createElement("time");
  when.textContent = time(ts);
  const body = document.createElement("span");
  body.textContent = text;
  li.append(who, " ", when, " ", body);
  return li;
}

const textOf = (data) => (typeof data?.text === "string" ? data.text : JSON.stringify(data));

/** Where a line sits in the order: its seq; a notice, after the newest seq when it was shown. */
const order = (li) => Number(li.dataset.seq ?? li.dataset.after ?? Infinity);

/** Puts `li` among the stored messages in seq order (our unconfirmed lines stay last). */
function placeBySeq(li, seq) {
  const list = $("messages");
  let prev = list.lastElementChild;
  while (prev && (prev === li || order(prev) >= seq)) prev = prev.previousElementSibling;
  if (prev) prev.after(li);
  else list.prepend(li);
  li.dataset.seq = seq;
  bySeq.set(seq, li);
  // The room's first message is on screen: there is nothing older to load.
  if (seq === 1 && older === "idle") setOlder("done");
}

/** A stored message from the room (live or rewound): appended, following the bottom. */
function showLive(m) {
  const follow = nearBottom();
  placeBySeq(line({ user: m.user, name: m.data?.name, text: textOf(m.data), ts: m.ts }), m.seq);
  if (follow) {
    trim();
    toBottom();
  }
}

/** Keeps the DOM bounded while following: the oldest lines go (and can be paged back in). */
function trim() {
  const list = $("messages");
  while (list.children.length > MAX_MESSAGES && order(list.firstElementChild) !== Infinity) {
    const first = list.firstElementChild;
    if (first.dataset.seq !== undefined) bySeq.delete(Number(first.dataset.seq));
    first.remove();
    if (older === "done") setOlder("idle");
  }
}

function notice(text) {
  const follow = nearBottom();
  const li = line({ user: "roomcast", text, ts: Date.now(), cls: "notice" });
  li.dataset.after = Math.max(0, ...bySeq.keys());
  const last = [...$("messages").children].findLast((el) => order(el) !== Infinity);
  if (last) last.after(li);
  else $("messages").prepend(li);
  if (follow) toBottom();
}

/** Our own message is stored as `seq`: mark it, and move it to its place in the order. */
function confirm(li, seq) {
  if (bySeq.get(seq) === li) return;
  li.className = "confirmed";
  if (bySeq.has(seq))
    li.remove(); // already on screen (rewound before the ack came)
  else placeBySeq(li, seq);
}

function setOlder(state, label) {
  older = state;
  const button = $("load-older");
  button.disabled = state !== "idle";
  button.textContent = label ?? { idle: "load older messages", loading: "loading…", done: "start of the room" }[state];
  $("older").dataset.state = state;
}

async function loadOlder() {
  if (older !== "idle" || room?.state !== "open") return;
  setOlder("loading");
  const oldest = Math.min(...bySeq.keys());
  try {
    const page = await room.history(Number.isFinite(oldest) ? { before: oldest, limit: PAGE } : { limit: PAGE });
    // Keep what the reader is looking at in place while lines go in above it.
    const s = scroller();
    const fromBottom = s.scrollHeight - s.scrollTop;
    for (const m of page.messages) {
      if (!bySeq.has(m.seq)) placeBySeq(line({ user: m.user, name: m.data?.name, text: textOf(m.data), ts: m.ts }), m.seq);
    }
    s.scrollTop = s.scrollHeight - fromBottom;
    setOlder(page.more ? "idle" : "done");
  } catch (err) {
    setOlder("idle", `could not load older messages (${err.code ?? err.message}): try again`);
  }
}

function showStatus(s) {
  clearInterval(countdown);
  const el = $("status");
  el.dataset.state = s.state;
  if (s.state === "reconnecting") {
    const until = Date.now() + s.delayMs;
    const tick = () => {
      el.textContent = `reconnecting in ${Math.max(0, (until - Date.now()) / 1000).toFixed(1)} s (attempt ${s.attempt})`;
    };
    tick();
    countdown = setInterval(tick, 100);
  } else {
    el.textContent = s.state === "closed" && s.reason ? `closed: ${s.reason}` : s.state;
  }
}

function showMembers(list) {
  members.clear();
  for (const m of list) members.set(m.user, m);
  $("members").replaceChildren(
    ...list.map((m) => {
      const li = document.createElement("li");
      li.className = m.connections > 0 ? "online" : "away";
      li.textContent = m.meta?.name ?? m.user;
      li.title = m.connections > 0 ? `online on ${m.connections} device(s)` : "reconnecting…";
      return li;
    }),
  );
}

// --- typing ---------------------------------------------------------------------------------

function renderTyping() {
  const names = [...typists.keys()].map(displayName);
  $("typing").textContent =
    names.length === 0
      ? ""
      : names.length === 1
        ? `${names[0]} is typing…`
        : names.length === 2
          ? `${names[0]} and ${names[1]} are typing…`
          : `${names[0]}, ${names[1]} and ${names.length - 2} more are typing…`;
}

function typing(user, on) {
  clearTimeout(typists.get(user));
  if (on)
    typists.set(
      user,
      setTimeout(() => typing(user, false), TYPING_TTL_MS),
    );
  else typists.delete(user);
  renderTyping();
}

function sayTyping(on) {
  if (room?.state !== "open") return;
  if (on && Date.now() - typingSentAt < TYPING_RENEW_MS) return;
  if (!on && typingSentAt === 0) return;
  typingSentAt = on ? Date.now() : 0;
  // Ephemeral: not queued while offline, so a refusal (offline, rate limited) is just dropped.
  room.broadcast({ typing: on }).catch(() => {});
}

// --- wiring ---------------------------------------------------------------------------------

async function join(name, roomName) {
  myName = cleanName(name);
  myUser = await userId(name);
  room?.close();
  for (const t of typists.values()) clearTimeout(t);
  typists.clear();
  bySeq.clear();
  pending.clear();
  $("messages").replaceChildren();
  renderTyping();
  setOlder("idle");
  // One client id per tab (kept across reloads), so two tabs are told apart and a tab's
  // reconnects keep their identity.
  const clientId = sessionStorage.getItem("roomcast-cid") ?? `tab-${crypto.randomUUID().slice(0, 8)}`;
  sessionStorage.setItem("roomcast-cid", clientId);
  room = connect({
    url: location.origin,
    room: roomName,
    clientId,
    echo: true,
    rewind: REWIND,
    token: () => devToken(name, roomName),
  });
  room.on("status", showStatus);
  room.on("presence", (p) => {
    showMembers(p.members);
    for (const user of p.left ?? []) if (typists.has(user)) typing(user, false);
    renderTyping();
  });
  room.on("message", (m) => {
    const mine = m.from === room.clientId ? pending.get(m.data?.nonce) : undefined;
    if (mine) {
      pending.delete(m.data.nonce);
      confirm(mine, m.seq);
    } else if (!bySeq.has(m.seq)) {
      showLive(m);
    }
    if (typists.has(m.user)) typing(m.user, false);
  });
  room.on("broadcast", (b) => {
    if (b.user === myUser || typeof b.data?.typing !== "boolean") return; // echo, our other tabs
    typing(b.user, b.data.typing);
  });
  room.on("gap", () => notice("some messages were missed while away"));
  $("join").hidden = true;
  $("chat").hidden = false;
  $("text").focus();
  window.room = room; // for the tests and the curious
}

$("join").addEventListener("submit", (e) => {
  // Only reached when the form is valid: the browser refuses a bad name with its own message.
  e.preventDefault();
  localStorage.setItem("roomcast-chat", JSON.stringify({ name: $("name").value, room: $("room").value }));
  join($("name").value, $("room").value);
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  $("text").value = "";
  typingSentAt = 0; // the message itself tells the others we stopped
  const nonce = Math.random().toString(36).slice(2, 10);
  // Shown at once as pending; confirmed when the server has stored it (sent later if offline).
  const li = line({ user: myUser, name: myName, text, ts: Date.now(), cls: "pending" });
  pending.set(nonce, li);
  $("messages").append(li);
  toBottom();
  room.publish({ text, nonce, name: myName }).then(
    (seq) => {
      pending.delete(nonce);
      confirm(li, seq);
    },
    (err) => {
      pending.delete(nonce);
      li.className = "failed";
      li.title = err.message;
    },
  );
});

$("text").addEventListener("input", () => sayTyping($("text").value !== ""));
$("text").addEventListener("blur", () => sayTyping(false));
$("load-older").addEventListener("click", loadOlder);
$("scroll").addEventListener(
  "scroll",
  () => {
    if (scroller().scrollTop < NEAR_EDGE_PX) loadOlder();
  },
  { passive: true },
);

// The last name and room used here, to save typing them again after a reload.
try {
  const last = JSON.parse(localStorage.getItem("roomcast-chat") ?? "null");
  if (last) {
    $("name").value = last.name ?? "";
    $("room").value = last.room ?? $("room").value;
  }
} catch {
  /* nothing saved */
}
