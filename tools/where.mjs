// `npm run --silent where`: this clone's absolute path, for the README tutorial
// (`ROOMCAST_HOME=$(npm run --silent where)`), which then works from any folder. It prints the path
// only when what the tutorial copies from it is there: the local secrets in .dev.vars (written by
// `npm run dev` or `npm run setup`) and the built SDK (sdk/dist/index.js, built by `npm run dev` or
// `npm run build:sdk`). Otherwise it says what to run on stderr, prints nothing and exits 1, so a
// wrong or empty path is never taken silently (the tutorial's next `cp` fails loudly).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** What is missing for the tutorial, as sentences; empty when nothing is. */
export function missing(root = ROOT) {
  const problems = [];
  const vars = join(root, ".dev.vars");
  const text = existsSync(vars) ? readFileSync(vars, "utf8") : "";
  for (const key of ["ROOMCAST_SECRET", "ROOMCAST_API_KEY"]) {
    if (!new RegExp(`^${key}="?[^"\\s]+`, "m").test(text))
      problems.push(`${vars} has no ${key}: run \`npm run setup\` (or \`npm run dev\`) in ${root}`);
  }
  if (!existsSync(join(root, "sdk", "dist", "index.js")))
    problems.push(`the SDK is not built: run \`npm run build:sdk\` (or \`npm run dev\`) in ${root}`);
  return problems;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const problems = missing();
  if (problems.length > 0) {
    for (const p of problems) console.error(`npm run where: ${p}`);
    process.exit(1);
  }
  console.log(ROOT);
}
