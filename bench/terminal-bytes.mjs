// What binary frames would save on terminal output (issue #25): runs a busy `top` in a
// pseudo-terminal (util-linux `script`) for a while, cuts its output into the messages a terminal
// agent sends (everything read within one batch window), and counts the bytes a viewer receives per
// second as roomcast's JSON `message` frames (the output as a JSON string), as the same frames with
// the output in base64 (what a JSON fallback for binary payloads costs), and as raw bytes with a
// binary header of the same fields (what binary frames could do at best).
//
//   node bench/terminal-bytes.mjs [--seconds 10] [--batch-ms 50] [--command "top -d 0.2"]
import { spawn } from "node:child_process";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const seconds = Number(arg("seconds", 10));
const batchMs = Number(arg("batch-ms", 50));
const command = arg("command", "top -d 0.2");

const child = spawn("script", ["-qfec", `stty cols 120 rows 40; ${command}`, "/dev/null"], {
  env: { ...process.env, TERM: "xterm-256color" },
  stdio: ["pipe", "pipe", "inherit"],
});
const batches = [];
let pending = [];
child.stdout.on("data", (b) => pending.push(b));
const timer = setInterval(() => {
  if (pending.length) batches.push(Buffer.concat(pending));
  pending = [];
}, batchMs);
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
clearInterval(timer);
child.kill("SIGKILL");

// A stored message as the room sends it (docs/PROTOCOL.md, `message`), with typical field values.
const envelope = (data) =>
  JSON.stringify({
    type: "message",
    seq: 123456,
    id: "c0ffee0123456789abcdef01-123456",
    from: "0123456789abcdef01234567",
    user: "agent",
    ts: 1796529354000,
    data,
  });
// A binary frame could carry the same fields in a fixed header: type 1, seq 8, ts 8, id 32, from 24,
// user 1 + length; counted generously as 80 bytes.
const BINARY_HEADER = 80;
let raw = 0;
let json = 0;
let base64 = 0;
let binary = 0;
let replaced = 0;
for (const b of batches) {
  raw += b.length;
  // As text: the agent cuts at UTF-8 boundaries; bytes that are not UTF-8 become U+FFFD, as a
  // terminal shows them.
  const text = b.toString("utf8");
  replaced += (text.match(/\uFFFD/g) ?? []).length;
  json += Buffer.byteLength(envelope(text));
  base64 += Buffer.byteLength(envelope(b.toString("base64")));
  binary += BINARY_HEADER + b.length;
}
const perSecond = (n) => `${Math.round(n / seconds).toLocaleString("en")} B/s`;
console.log(
  `${command}, ${seconds} s, ${batches.length} messages (${batchMs} ms batches), machine: ${process.arch}, Node ${process.version}`,
);
console.log(`terminal output (raw bytes):       ${perSecond(raw)}`);
console.log(`binary frames (80-byte header):    ${perSecond(binary)}  ${(binary / raw).toFixed(2)} x raw`);
console.log(`JSON message frames (as a string): ${perSecond(json)}  ${(json / binary).toFixed(2)} x binary`);
console.log(`JSON message frames (base64):      ${perSecond(base64)}  ${(base64 / binary).toFixed(2)} x binary`);
console.log(`bytes that were not UTF-8: ${replaced}`);
