// The frames the server sends, each with the fields the SDK reads (unknown fields are ignored).
// A frame of one of these types that fails its check is not acted on: host.js reports it as a
// `bad_frame` error. Other types are ignored silently (forward compatibility). sdk/test/shapes.test.mjs
// checks every server frame type of docs/protocol.schema.json has a shape here, and that every
// golden server frame (tests/golden/frames.json) passes it.

const isSeq = (n) => Number.isSafeInteger(n) && n >= 0;
export const isStr = (s) => typeof s === "string";
const isMember = (m) => isStr(m?.user);
const fromUser = (f) => isStr(f.from) && isStr(f.user);

export const SHAPES = {
  __proto__: null,
  welcome: (f) =>
    isStr(f.epoch)
    && isSeq(f.seq)
    && Array.isArray(f.members)
    && f.members.every(isMember)
    && (f.expires === undefined || isSeq(f.expires)),
  message: (f) => isSeq(f.seq) && fromUser(f),
  ack: (f) => isStr(f.id) && (f.seq === undefined || isSeq(f.seq)),
  error: (f) => isStr(f.code),
  pong: () => true,
  mark: (f) => isStr(f.id),
  presence: (f) => isMember(f.member) && isStr(f.event),
  direct: fromUser,
  broadcast: fromUser,
  // its messages are checked by the API layer, which settles the call either way
  history: (f) => isStr(f.id),
  refreshed: (f) => isSeq(f.expires),
  // a session socket's own frames (docs/PROTOCOL.md, Sessions); its rooms' frames carry `room`
  session: (f) => isStr(f.user) && isStr(f.clientId),
  joined: (f) => isStr(f.room) && SHAPES.welcome(f) && (f.read === undefined || isSeq(f.read)),
  left: (f) => isStr(f.room) && isSeq(f.code),
  gap: (f) => isStr(f.room) && isStr(f.reason) && (f.until === undefined || isSeq(f.until)),
  watch: (f) => isStr(f.room) && isSeq(f.seq) && isSeq(f.unread),
  read_position: (f) => isStr(f.room) && isSeq(f.seq),
};
