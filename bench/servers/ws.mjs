// (E) A raw `ws` broadcast server on Node: the room is the URL path, and every text frame goes as
// is to the room's other members. No compression. Prints "listening <port>".
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 0);
const rooms = new Map();
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false });
wss.on("connection", (ws, request) => {
  const name = new URL(request.url, "http://localhost").pathname;
  let room = rooms.get(name);
  if (!room) {
    room = new Set();
    rooms.set(name, room);
  }
  room.add(ws);
  ws.on("message", (data, isBinary) => {
    for (const other of room) {
      if (other !== ws && other.readyState === 1) other.send(data, { binary: isBinary });
    }
  });
  ws.on("close", () => {
    room.delete(ws);
    if (room.size === 0) rooms.delete(name);
  });
});
wss.on("listening", () => console.log(`listening ${wss.address().port}`));
