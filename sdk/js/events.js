// What the wasm's `conn_event` export is told, by number, as protocol/src/client/abi.rs's `EVENTS`
// numbers it (a test there holds these to it). Constants in a module of their own, which imports
// nothing, so that esbuild writes the numbers in their place and no table of names ships (it does
// not inline the constants of a module that imports another; sdk/README.md, Size).
export const EV_PUBLISH = 0,
  EV_SEND_TO = 1,
  EV_HISTORY = 2,
  EV_BROADCAST = 3,
  EV_PRESENCE = 4,
  EV_TOKEN = 5,
  EV_REFRESHED = 6,
  EV_MESSAGE = 7,
  EV_SETTLED = 8,
  EV_PONG = 9,
  EV_CLOSED = 10,
  EV_TIMER = 11,
  EV_WAKE = 12,
  EV_CLOSE = 13,
  EV_LAST_SEQ = 14,
  EV_MARK = 15,
  EV_GAP = 16,
  EV_MARK_READ = 17,
  EV_WATCH = 18,
  EV_NETWORK = 19,
  EV_VISIBILITY = 20,
  EV_NUDGE = 21,
  EV_EXPIRED = 22;
