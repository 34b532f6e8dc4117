// Commit subjects of at most 72 characters: every commit after BASE (main's tip when the rule came;
// older commits are history) is checked, and so is the commit-msg hook that refuses longer ones
// (scripts/hooks/commit-msg, which scripts/setup.sh installs). A subject is what
// `git log --format=%s` shows: the message's first paragraph, its lines joined by spaces. A shallow
// clone that lacks BASE skips the history check and says so.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MAX = 72;
const BASE = "6e0d565f29db1cbfb3e4fafcd9113506a11cf35b";

/** The entries of `log` (lines "<hash> <subject>") whose subject is longer than MAX characters. */
function tooLong(log) {
  return log
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => ({ hash: line.slice(0, line.indexOf(" ")), subject: line.slice(line.indexOf(" ") + 1) }))
    .filter(({ subject }) => [...subject].length > MAX)
    .map(({ hash, subject }) => `${hash.slice(0, 7)} (${[...subject].length} characters): ${subject}`);
}

const git = (...args) => spawnSync("git", args, { cwd: ROOT, encoding: "utf8" });

test("a subject's length is counted in characters, and 73 is too many", () => {
  const at = (n, c = "x") => `${"f".repeat(40)} ${c.repeat(n)}`;
  assert.deepEqual(tooLong([at(72), at(72, "×"), ""].join("\n")), []);
  assert.equal(tooLong([at(73), at(10)].join("\n")).length, 1);
  assert.match(tooLong(at(80, "÷"))[0], /^fffffff \(80 characters\): ÷+$/);
});

test("every commit since the base has a subject of at most 72 characters", (t) => {
  if (git("rev-parse", "--is-inside-work-tree").stdout.trim() !== "true") {
    t.skip("not a git work tree");
    return;
  }
  if (git("cat-file", "-e", `${BASE}^{commit}`).status !== 0) {
    if (git("rev-parse", "--is-shallow-repository").stdout.trim() === "true") {
      t.skip(`a shallow clone without the base commit ${BASE.slice(0, 7)}; \`git fetch --unshallow\` lets this check run`);
      return;
    }
    assert.fail(`the base commit ${BASE} is not in this repository`);
  }
  assert.equal(git("merge-base", "--is-ancestor", BASE, "HEAD").status, 0, `HEAD does not descend from the base commit ${BASE}`);
  const log = git("log", "--format=%H %s", `${BASE}..HEAD`);
  assert.equal(log.status, 0, log.stderr);
  assert.deepEqual(tooLong(log.stdout), [], `subjects over ${MAX} characters (put the details in the body)`);
});

test("the commit-msg hook refuses a subject over 72 characters and accepts the rest", () => {
  const dir = mkdtempSync(join(tmpdir(), "roomcast-commit-msg-"));
  const hook = (message) => {
    const file = join(dir, "COMMIT_EDITMSG");
    writeFileSync(file, message);
    return spawnSync("bash", [join(ROOT, "scripts/hooks/commit-msg"), file], { encoding: "utf8" });
  };
  try {
    assert.equal(hook(`${"x".repeat(72)}\n\nA body line may be as long as it likes: ${"y".repeat(100)}\n`).status, 0);
    assert.equal(hook(`${"×".repeat(72)}\n`).status, 0, "72 characters of two bytes each");
    assert.equal(hook(`# a comment git adds\n\n${"x".repeat(60)}\n# ${"z".repeat(100)}\n`).status, 0);
    const long = hook(`${"x".repeat(73)}\n`);
    assert.equal(long.status, 1);
    assert.match(long.stderr, /73 characters; keep it to 72/);
    // A first paragraph of two lines is one subject, as git log shows it.
    assert.equal(hook(`${"a".repeat(40)}\n${"b".repeat(40)}\n\nbody\n`).status, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
