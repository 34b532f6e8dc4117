// (D) Socket.IO 4 on Node: websocket transport only, no compression. A member joins a room with
// `join`, and each `m` it emits goes to the room's other members. Prints "listening <port>".
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 0);
const io = new Server({ transports: ["websocket"], perMessageDeflate: false, serveClient: false });
io.on("connection", (socket) => {
  socket.on("join", (room) => {
    socket.join(room);
    socket.data.room = room;
    socket.emit("joined");
  });
  socket.on("m", (payload) => {
    if (socket.data.room) socket.to(socket.data.room).emit("m", payload);
  });
});
io.listen(port);
console.log(`listening ${port}`);
