// The session storm's checks (tests/chaos/session-storm.mjs, checkSessionRun) fire on a tampered
// log: a delivery removed, doubled, moved or altered, an acknowledged publish that is not stored,
// a read position that moves back. No server needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { checkSessionRun } from "../chaos/session-storm.mjs";

const stored = new Map([
  [
    "r1",
    new Map([
      [1, "a"],
      [2, "b"],
      [3, "c"],
    ]),
  ],
  ["r2", new Map([[1, "x"]])],
]);
const members = [
  { device: "u-d0", rooms: ["r1", "r2"] },
  { device: "u-d1", rooms: ["r1"] },
];
const honest = () => [
  { t: "ack", room: "r1", key: "a", seq: 1 },
  { t: "deliver", device: "u-d0", room: "r1", seq: 1, key: "a" },
  { t: "deliver", device: "u-d1", room: "r1", seq: 1, key: "a" },
  { t: "deliver", device: "u-d0", room: "r2", seq: 1, key: "x" },
  { t: "read", device: "u-d1", room: "r1", seq: 1 },
  { t: "deliver", device: "u-d0", room: "r1", seq: 2, key: "b" },
  { t: "deliver", device: "u-d0", room: "r1", seq: 3, key: "c" },
  { t: "deliver", device: "u-d1", room: "r1", seq: 2, key: "b" },
  { t: "deliver", device: "u-d1", room: "r1", seq: 3, key: "c" },
  { t: "read", device: "u-d1", room: "r1", seq: 3 },
];
const run = (log) => checkSessionRun({ stored, log, members });
const only = (result) =>
  Object.entries(result)
    .filter(([k, v]) => k !== "problems" && v > 0)
    .map(([k]) => k);

test("an honest log passes", () => {
  assert.deepEqual(run(honest()).problems, []);
});

test("each check fires on the log tampered its way", () => {
  const tampered = {
    lost: (l) => l.filter((_, i) => i !== 5),
    duplicated: (l) => [...l, l[6]],
    reordered: (l) => {
      const copy = [...l];
      [copy[5], copy[6]] = [copy[6], copy[5]];
      return copy;
    },
    disagreements: (l) => l.map((e, i) => (i === 7 ? { ...e, key: "forged" } : e)),
    unstoredAcks: (l) => [...l, { t: "ack", room: "r2", key: "y", seq: 2 }],
    readsBack: (l) => [...l, { t: "read", device: "u-d1", room: "r1", seq: 2 }],
  };
  for (const [kind, tamper] of Object.entries(tampered)) {
    const result = run(tamper(honest()));
    assert.deepEqual(only(result), [kind], `${kind}: ${result.problems.join("; ")}`);
  }
});
