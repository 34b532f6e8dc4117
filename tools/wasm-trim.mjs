// Takes out of the SDK's wasm what only formats panic messages nobody reads (scripts/build-sdk.sh
// runs it on the text form, before and after wasm-opt; sdk/README.md, Size). The SDK's panic
// handler traps without looking at its message, yet the standard library's out-of-memory handler
// and `Vec`'s capacity-overflow path (precompiled, so `-Zbuild-std` would be needed to build them
// with `panic_immediate_abort`) write a message's arguments to the stack before they trap, and
// those writes keep their strings, their source locations and core::fmt's digit table in the data.
//
//   node tools/wasm-trim.mjs stub FILE.wat   the message builders (and `Vec`'s error path that calls
//                                            them) become a bare trap: the same trap, only their
//                                            unread stack writes go
//   node tools/wasm-trim.mjs tail FILE.wat   after wasm-opt removed what only they reached: drops
//                                            the end of the read-only data from the first source
//                                            location path (`/rustc/…`) on, if nothing outside it
//                                            points into it; else leaves it and says so
//
// Both rewrite FILE in place, and say so when they find nothing to do (a new toolchain may name or
// lay things out otherwise: then this tool needs a look; the size budget fails the build anyway).
import { readFileSync, writeFileSync } from "node:fs";

/**
 * The functions that only build a panic message and trap: the out-of-memory handler ("memory
 * allocation of N bytes failed"), `capacity_overflow`, and `raw_vec::handle_error`, which calls
 * one or the other. Each name with its length, as Rust's v0 and legacy manglings both write it,
 * so a longer name cannot match.
 */
const MESSAGE_BUILDERS = [/25___rdl_alloc_error_handler|9__rdl_oom/, /7raw_vec17capacity_overflow/, /7raw_vec12handle_error/];

function stub(wat) {
  const lines = wat.split("\n");
  for (const name of MESSAGE_BUILDERS) {
    const at = lines.findIndex((l) => l.startsWith(" (func $") && name.test(l.split(" ")[2]));
    if (at < 0) {
      console.warn(`wasm-trim: no function matching ${name} (left as it is)`);
      continue;
    }
    const end = lines.indexOf(" )", at);
    lines.splice(at + 1, end - at - 1, "  (unreachable)");
  }
  return lines.join("\n");
}

const ESCAPES = { t: 9, n: 10, r: 13, '"': 34, "'": 39, "\\": 92 };

/** The bytes of a wat string literal's contents. */
function bytesOf(s) {
  const out = [];
  for (let i = 0; i < s.length; ) {
    if (s[i] !== "\\") {
      out.push(...Buffer.from(s[i++]));
    } else if (s[i + 1] in ESCAPES) {
      out.push(ESCAPES[s[i + 1]]);
      i += 2;
    } else {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    }
  }
  return Buffer.from(out);
}

const DATA = /^ \(data (\$\S+ )?\(i32\.const (\d+)\) "(.*)"\)$/;

function tail(wat) {
  const lines = wat.split("\n");
  const segments = lines.flatMap((l, i) => {
    const m = DATA.exec(l);
    return m ? [{ line: i, name: m[1] ?? "", start: Number(m[2]), bytes: bytesOf(m[3]) }] : [];
  });
  const ro = segments.find((s) => s.bytes.includes("/rustc/"));
  if (!ro) {
    console.warn("wasm-trim: no data segment holds a /rustc/ path (nothing dropped)");
    return wat;
  }
  const cut = ro.start + ro.bytes.indexOf("/rustc/");
  const end = ro.start + ro.bytes.length;
  // Every address the code names (constants and load/store offsets, which wasm-opt folds
  // addresses into) and every aligned word of the data outside the part to drop.
  const refs = lines.filter((l) => !DATA.test(l)).flatMap((l) => [...l.matchAll(/(?:i32\.const |offset=)(\d+)/g)].map((m) => Number(m[1])));
  for (const s of segments) {
    for (let at = (4 - (s.start % 4)) % 4; at + 4 <= s.bytes.length; at += 4) {
      if (s !== ro || s.start + at < cut) refs.push(s.bytes.readUInt32LE(at));
    }
  }
  const into = refs.filter((r) => r >= cut && r < end);
  if (into.length) {
    console.warn(`wasm-trim: kept the data from ${cut} on: ${into.length} references point into it (${into.slice(0, 4)})`);
    return wat;
  }
  const kept = ro.bytes.subarray(0, cut - ro.start);
  lines[ro.line] = ` (data ${ro.name}(i32.const ${ro.start}) "${[...kept].map((b) => `\\${b.toString(16).padStart(2, "0")}`).join("")}")`;
  return lines.join("\n");
}

const [mode, file] = process.argv.slice(2);
const steps = { stub, tail };
if (!steps[mode] || !file) {
  console.error("usage: node tools/wasm-trim.mjs stub|tail FILE.wat");
  process.exit(2);
}
try {
  writeFileSync(file, steps[mode](readFileSync(file, "utf8")));
} catch (e) {
  console.error(`wasm-trim ${mode}: ${e.message}`);
  process.exit(1);
}
