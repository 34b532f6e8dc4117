// docs/ARCHITECTURE.md names every folder of the source tree, so a folder added without a word
// there fails here. The folders are those that hold a file git tracks (or would track: untracked
// files that are not ignored count too) under the roots below, down to three levels
// (`protocol/src/api/`; a deeper folder counts as its three-level ancestor). Named means written as
// `path/` in backticks. The other way round, every folder the layout table lists must exist.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const ROOTS = ["protocol", "worker", "sdk", "tests", "demo", "tools", "bench", "scripts", "docs", "examples"];
const DEPTH = 3;
const DOC = "docs/ARCHITECTURE.md";

/** The folders (`a/b/`, at most DEPTH levels) that hold the `files` (paths relative to the root) under ROOTS. */
function foldersOf(files) {
  const folders = new Set();
  for (const file of files) {
    const parts = file.split("/").slice(0, -1);
    if (parts.length === 0 || !ROOTS.includes(parts[0])) continue;
    folders.add(`${parts.slice(0, DEPTH).join("/")}/`);
  }
  return [...folders].sort();
}

/** The `folders` that `doc` does not name as `folder/` in backticks. */
function undocumented(folders, doc) {
  return folders.filter((f) => !doc.includes(`\`${f}\``));
}

/** The folders in the first column of the doc's layout table (rows starting "| `path/` |"). */
function tableFolders(doc) {
  return [...doc.matchAll(/^\| `([^`]+\/)` \|/gm)].map((m) => m[1]);
}

test("the check finds a folder the doc does not name, at three levels at most", () => {
  const files = ["README.md", "protocol/src/lib.rs", "protocol/src/store/mod.rs", "tests/unit/a/b/c.mjs", "target/x.rs"];
  assert.deepEqual(foldersOf(files), ["protocol/src/", "protocol/src/store/", "tests/unit/a/"]);
  const doc = "| `protocol/src/` | the core |\nand `tests/unit/a/` too; protocol/src/store/ without backticks does not count";
  assert.deepEqual(undocumented(foldersOf(files), doc), ["protocol/src/store/"]);
  assert.deepEqual(tableFolders(doc), ["protocol/src/"]);
});

test("docs/ARCHITECTURE.md names every folder of the tree, and its table only folders that exist", (t) => {
  const listed = spawnSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], { cwd: ROOT, encoding: "utf8" });
  if (listed.status !== 0) {
    t.skip(`not a git work tree (git ls-files: ${listed.stderr.trim() || listed.error?.message})`);
    return;
  }
  const files = listed.stdout.split("\0").filter(Boolean);
  const folders = foldersOf(files);
  const doc = readFileSync(join(ROOT, DOC), "utf8");
  assert.ok(folders.includes("protocol/src/") && folders.includes("tests/unit/"), "the listing found the source tree");
  assert.deepEqual(undocumented(folders, doc), [], `folders that ${DOC} does not name (add a row to its layout table)`);
  const gone = tableFolders(doc).filter((f) => !files.some((file) => file.startsWith(f)));
  assert.deepEqual(gone, [], `folders in ${DOC}'s layout table that hold no file`);
});
