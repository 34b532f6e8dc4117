// The team chat demo: channels, direct messages and unread badges, all over one socket
// (`createClient`). The open room is joined (its messages, 50 on arrival); every other room is
// watched (its seq and unread count only), a DM with everyone seen in a room included. Reading the open room marks it read, and every tab of
// the same user sees the badge go. Tokens come from the development-only endpoint, for every room
// (`room=*`); direct-message rooms (`dm~alice,bob`) admit only the users they name.
import { createClient } from "roomcast";
import { cleanName, devToken, userId } from "./identity.js";

const $ = (id) => document.getElementById(id);
const CHANNELS = ["chat:general", "chat:random", "chat:ops"];
const REWIND = 50;

let client;
let me = "";
let open = null; // { name, room }
const dms = new Set();
const unread = new Map(); // room -> unread count shown

const names = new Map(); // user id -> the name people see (identity.js)
const nameOf = (user, carried) => names.get(user) ?? (typeof carried === "string" ? carried : user);

/** The direct-message room of two users: their ids in ascending order, as the server requires. */
const dmRoom = (a, b) => `dm~${[a, b].sort().join(",")}`;
const label = (room) => {
  if (!room.startsWith("dm~")) return `# ${room.slice(5)}`;
  const other =
    room
      .slice(3)
      .split(",")
      .find((u) => u !== me) ?? me;
  return `@ ${nameOf(other)}`;
};

function renderRooms() {
  for (const [id, rooms] of [
    ["channels", CHANNELS],
    ["dms", [...dms]],
  ]) {
    const list = $(id);
    list.replaceChildren(
      ...rooms.map((room) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = label(room);
        b.dataset.room = room;
        b.className = room === open?.name ? "current" : "";
        b.onclick = () => show(room);
        const n = room === open?.name ? 0 : (unread.get(room) ?? 0);
        if (n > 0) {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = String(n);
          b.append(" ", badge);
        }
        li.append(b);
        return li;
      }),
    );
  }
}

function line(m) {
  const li = document.createElement("li");
  const who = document.createElement("b");
  who.textContent = nameOf(m.user, m.data?.name);
  const body = document.createElement("span");
  body.textContent = typeof m.data?.text === "string" ? m.data.text : JSON.stringify(m.data);
  li.append(who, " ", body);
  li.dataset.seq = m.seq;
  return li;
}

/** Opens `name`: the previous room is left (and watched again), this one joined and read. */
function show(name) {
  if (open?.name === name) return;
  open?.room.leave();
  $("messages").replaceChildren();
  $("title").textContent = label(name);
  const room = client.join(name, { rewind: REWIND, echo: true });
  open = { name, room };
  room.on("message", (m) => {
    if (open?.room !== room) return;
    $("messages").append(line(m));
    $("scroll").scrollTop = $("scroll").scrollHeight;
    // what is on screen is read: every tab of this user drops the badge
    room.markRead(m.seq);
  });
  // everyone seen in a room gets a DM entry, watched for unread messages
  room.on("presence", ({ members }) => {
    const before = dms.size;
    for (const m of members) if (typeof m.meta?.name === "string") names.set(m.user, m.meta.name);
    for (const m of members) if (m.user !== me) dms.add(dmRoom(me, m.user));
    if (dms.size !== before) {
      watchOthers();
      renderRooms();
    }
  });
  room.on("status", (s) => {
    // a room that refused this user (a DM that does not name them, a ban) says why
    if (s.state === "closed" && s.code >= 4400 && open?.room === room) $("title").textContent = `${label(name)} (${s.reason})`;
  });
  watchOthers();
  renderRooms();
}

function watchOthers() {
  client.watch([...CHANNELS, ...dms].filter((r) => r !== open?.name));
}

$("join").onsubmit = async (e) => {
  e.preventDefault();
  const myName = cleanName($("name").value);
  me = await userId(myName);
  names.set(me, myName);
  $("join").hidden = true;
  $("team").hidden = false;
  client = createClient({ url: location.origin, token: () => devToken(myName, "*") });
  client.on("status", (s) => {
    $("status").textContent = s.state;
    $("status").dataset.state = s.state;
  });
  client.on("watch", ({ room, unread: n }) => {
    if (room.startsWith("dm~")) dms.add(room);
    unread.set(room, n);
    renderRooms();
  });
  client.on("read", ({ room }) => {
    const r = client.rooms().find((x) => x.room === room);
    if (r) unread.set(room, r.unread);
    renderRooms();
  });
  show(CHANNELS[0]);
};

$("dm").onsubmit = async (e) => {
  e.preventDefault();
  const peerName = cleanName($("peer").value);
  const peer = await userId(peerName);
  names.set(peer, peerName);
  const room = dmRoom(me, peer);
  $("peer").value = "";
  dms.add(room);
  show(room);
};

$("send").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value;
  $("text").value = "";
  await open?.room.publish({ text, name: names.get(me) });
};
