// The chat demo: the SDK as an app uses it. Tokens come from the development-only endpoint;
// a real app gets them from its own backend.
import { connect } from "roomcast";

const $ = (id) => document.getElementById(id);
const MAX_MESSAGES = 500; // bounded DOM
let room;
let countdown;

async function fetchToken(name, roomName) {
  const meta = encodeURIComponent(JSON.stringify({ name }));
  const res = await fetch(`/dev/token?user=${encodeURIComponent(name)}&room=${encodeURIComponent(roomName)}&meta=${meta}`);
  if (!res.ok) throw new Error(`token: ${res.status}`);
  return (await res.json()).token;
}

function time(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function addMessage({ user, text, ts, pending }) {
  const li = document.createElement("li");
  if (pending) li.className = "pending";
  const who = document.createElement("b");
  who.textContent = user;
  const when = document.createElement("time");
  when.textContent = time(ts);
  const body = document.createElement("span");
  body.textContent = text;
  li.append(who, " ", when, " ", body);
  const list = $("messages");
  list.append(li);
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  li.scrollIntoView({ block: "end" });
  return li;
}

function showStatus(s) {
  clearInterval(countdown);
  const el = $("status");
  el.dataset.state = s.state;
  if (s.state === "reconnecting") {
    const until = Date.now() + s.delayMs;
    const tick = () => { el.textContent = `reconnecting in ${Math.max(0, (until - Date.now()) / 1000).toFixed(1)} s (attempt ${s.attempt})`; };
    tick();
    countdown = setInterval(tick, 100);
  } else {
    el.textContent = s.state === "closed" && s.reason ? `closed: ${s.reason}` : s.state;
  }
}

function showMembers(members) {
  $("members").replaceChildren(...members.map((m) => {
    const li = document.createElement("li");
    li.className = m.connections > 0 ? "online" : "away";
    li.textContent = m.meta?.name ?? m.user;
    li.title = m.connections > 0 ? `online on ${m.connections} device(s)` : "reconnecting…";
    return li;
  }));
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value;
  const roomName = $("room").value;
  room?.close();
  // One client id per tab, so a reload resumes this tab's own stream.
  const clientId = sessionStorage.getItem("roomcast-cid") ?? `tab-${crypto.randomUUID().slice(0, 8)}`;
  sessionStorage.setItem("roomcast-cid", clientId);
  room = connect({ url: location.origin, room: roomName, clientId, token: () => fetchToken(name, roomName) });
  room.on("status", showStatus);
  room.on("presence", (p) => showMembers(p.members));
  room.on("message", (m) => addMessage({ user: m.user, text: m.data?.text ?? JSON.stringify(m.data), ts: m.ts }));
  room.on("gap", () => addMessage({ user: "roomcast", text: "some messages were missed while away", ts: Date.now() }));
  $("join").hidden = true;
  $("chat").hidden = false;
  $("text").focus();
  window.room = room; // for the tests and the curious
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  $("text").value = "";
  // Shown at once as pending; confirmed when the server has stored it (sent later if offline).
  const li = addMessage({ user: $("name").value, text, ts: Date.now(), pending: true });
  room.publish({ text }).then(
    (seq) => { li.className = "confirmed"; li.dataset.seq = seq; },
    (err) => { li.className = "failed"; li.title = err.message; },
  );
});
