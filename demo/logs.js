// Live log tail: messages carry batches of lines ({ lines: [...] }, from `npm run demo:logs`).
// It keeps up with thousands of lines per second by rendering at most once per animation frame
// and keeping at most MAX_LINES lines in the DOM.
import { connect } from "roomcast";

const $ = (id) => document.getElementById(id);
const MAX_LINES = 1000;
let incoming = []; // lines received since the last frame
let total = 0;
let following = true;
let filter = "";
let frameRequested = false;
const arrivals = []; // [time, count] for the rate over the last second
let room;

function render() {
  frameRequested = false;
  if (!following) return;
  const lines = filter ? incoming.filter((l) => l.includes(filter)) : incoming;
  incoming = [];
  if (lines.length === 0) return;
  const log = $("log");
  const fragment = document.createDocumentFragment();
  for (const line of lines.slice(-MAX_LINES)) {
    const div = document.createElement("div");
    div.textContent = line;
    if (line.includes("ERROR")) div.className = "error";
    else if (line.includes("WARN")) div.className = "warn";
    fragment.append(div);
  }
  log.append(fragment);
  const excess = log.childElementCount - MAX_LINES;
  for (let i = 0; i < excess; i++) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
  showMeter();
}

/**
 * The meter's counts, written together: every line shown was received before it was drawn, so
 * "shown" never reads more than "received" (written apart, the count drawn at the frame would be
 * ahead of the received count written a quarter of a second later).
 */
function showMeter() {
  $("total").textContent = total;
  $("shown").textContent = $("log").childElementCount;
}

function receive(lines) {
  total += lines.length;
  arrivals.push([performance.now(), lines.length]);
  if (following) {
    incoming.push(...lines);
    // While paused nothing accumulates: the tail resumes from the live edge.
    if (incoming.length > MAX_LINES) incoming = incoming.slice(-MAX_LINES);
  }
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

setInterval(() => {
  const now = performance.now();
  while (arrivals.length && arrivals[0][0] < now - 1000) arrivals.shift();
  $("rate").textContent = arrivals.reduce((n, [, c]) => n + c, 0);
  showMeter();
}, 250);

async function token(roomName) {
  const res = await fetch(
    `/dev/token?user=viewer-${Math.random().toString(36).slice(2, 8)}&room=${encodeURIComponent(roomName)}&rights=subscribe`,
  );
  return (await res.json()).token;
}

function open(roomName) {
  room?.close();
  // Another room: its own count, from nothing.
  $("log").replaceChildren();
  incoming = [];
  total = 0;
  arrivals.length = 0;
  showMeter();
  room = connect({ url: location.origin, room: roomName, token: () => token(roomName) });
  room.on("status", (s) => {
    $("status").textContent = s.state;
    $("status").dataset.state = s.state;
  });
  room.on("message", (m) => receive(Array.isArray(m.data?.lines) ? m.data.lines : [String(m.data?.line ?? JSON.stringify(m.data))]));
  room.on("gap", () => receive(["-- some lines were missed --"]));
  window.room = room;
}

$("follow").addEventListener("click", () => {
  following = !following;
  $("follow").textContent = following ? "Pause" : "Follow";
  $("follow").setAttribute("aria-pressed", String(following));
});
$("filter").addEventListener("input", (e) => {
  filter = e.target.value;
});
$("room").addEventListener("change", (e) => {
  // A room name the server would refuse is refused here, with the browser's message.
  if (e.target.reportValidity()) open(e.target.value);
});
$("room").value = new URLSearchParams(location.search).get("room") ?? $("room").value;
open($("room").value);
