// A small chat on roomcast/react. Plain createElement, so it needs no JSX plugin.
// Run the edge (`npm run dev` at the repository root), then here: npm install && npx vite
import { createElement as h, StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { useConnectionState, usePresence, useRoom } from "roomcast/react";

const EDGE = import.meta.env.VITE_ROOMCAST_URL ?? "http://127.0.0.1:8787";
const ROOM = import.meta.env.VITE_ROOMCAST_ROOM ?? "chat:react";
const USER = `guest-${Math.random().toString(36).slice(2, 7)}`;

// Your backend mints tokens; here the edge's development-only endpoint stands in for it.
async function token() {
  const res = await fetch(`${EDGE}/dev/token?user=${USER}&room=${encodeURIComponent(ROOM)}`);
  return (await res.json()).token;
}

function Chat() {
  const room = useRoom({ url: EDGE, room: ROOM, token, echo: true });
  const state = useConnectionState(room);
  const members = usePresence(room);
  const [messages, setMessages] = useState([]);
  const [text, setText] = useState("");
  useEffect(() => room?.on("message", (m) => setMessages((list) => [...list.slice(-199), m])), [room]);
  const send = (e) => {
    e.preventDefault();
    room?.publish({ text });
    setText("");
  };
  return h(
    "main",
    null,
    h("p", { id: "state" }, `${state} · ${members.length} here: ${members.map((m) => m.user).join(", ")}`),
    h(
      "ol",
      { id: "messages" },
      messages.map((m) => h("li", { key: m.seq }, `${m.user}: ${m.data.text}`)),
    ),
    h(
      "form",
      { onSubmit: send },
      h("input", { id: "text", value: text, onChange: (e) => setText(e.target.value), placeholder: "message" }),
      h("button", { type: "submit" }, "Send"),
    ),
  );
}

createRoot(document.getElementById("root")).render(h(StrictMode, null, h(Chat)));
