#!/usr/bin/env node
// Publishes log lines to a room through the HTTP API, in batches:
//   npm run demo:logs -- --room logs:app --rate 200 [--file app.log] [--count 5000] [--url http://127.0.0.1:8787]
// Without --file it generates lines; with it, it tails the file (new lines as they are written).
// Each POST carries one message per batch: { "data": { "lines": [...] } }, with an id, so a retry
// after a network error is applied once.
import { createReadStream, statSync, watch } from "node:fs";
import { devVar } from "./token.mjs";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const url = (args.url ?? "http://127.0.0.1:8787").replace(/\/$/, "");
const room = args.room ?? "logs:app";
const rate = Number(args.rate ?? 200);
const count = args.count === undefined ? Infinity : Number(args.count);
const key = args.key ?? process.env.ROOMCAST_API_KEY ?? devVar("ROOMCAST_API_KEY");
if (!key) {
  console.error("demo:logs: no API key (--key, $ROOMCAST_API_KEY or .dev.vars)");
  process.exit(2);
}
const TICK_MS = 100;
const run = Math.random().toString(36).slice(2, 8);
let batch = 0;
let sent = 0;
const pending = [];

async function post(lines) {
  const id = `${run}-${batch++}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${url}/rooms/${room}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ id, data: { lines } }),
      });
      if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
      return;
    } catch (e) {
      if (attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

const LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
function generated(n) {
  return Array.from({ length: n }, () => {
    const i = sent + 1;
    sent++;
    const level = LEVELS[i % LEVELS.length];
    return `${new Date().toISOString()} ${level.padEnd(5)} app[${process.pid}] request ${i} handled in ${(i * 7) % 250} ms`;
  });
}

if (args.file) {
  // Tail: start at the end, publish what is appended.
  let offset = statSync(args.file).size;
  let carry = "";
  const readNew = () => {
    const size = statSync(args.file).size;
    if (size <= offset) return;
    createReadStream(args.file, { start: offset, end: size - 1, encoding: "utf8" }).on("data", (chunk) => {
      const parts = (carry + chunk).split("\n");
      carry = parts.pop();
      pending.push(...parts);
    });
    offset = size;
  };
  watch(args.file, readNew);
}

// One batch per tick, posted in order: a post that runs late delays the next one instead of
// racing it, so lines keep their order in the room.
const started = Date.now();
for (let tick = 1; ; tick++) {
  const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
  const lines = args.file ? pending.splice(0, perTick * 10) : generated(Math.min(perTick, count - sent));
  if (lines.length) await post(lines).catch((e) => console.error(`demo:logs: ${e.message}`));
  if (!args.file && sent >= count) {
    console.log(`demo:logs: published ${sent} lines to ${room}`);
    break;
  }
  const wait = started + tick * TICK_MS - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
