// What a page ships, as tools/sdk-size.mjs measures it (after `npm run build:sdk`): the package
// file within its budget, and the figures README.md and sdk/README.md state equal to the measured
// ones (within 2%, for another machine's toolchain), so a size that changes takes its docs along.
// The React app's figure is checked by tests/e2e/package.test.mjs, which builds it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DOCUMENTED, documentedSizes, PAGE_BUDGET, sdkParts } from "../../tools/sdk-size.mjs";

test('dist/index.js, what `import "roomcast"` loads, fits its budget gzipped', () => {
  const { bundle, wasm, glue } = sdkParts();
  assert.ok(wasm.gzip > 0 && glue.gzip > 0);
  assert.ok(bundle.gzip > wasm.gzip + glue.gzip, "the package file carries the wasm and the glue");
  assert.ok(bundle.gzip <= PAGE_BUDGET, `dist/index.js is ${bundle.gzip} bytes gzipped, over ${PAGE_BUDGET}`);
});

test("README.md and sdk/README.md state the measured sizes", () => {
  const measured = sdkParts();
  for (const file of ["README.md", "sdk/README.md"]) {
    const doc = documentedSizes(file);
    assert.ok(doc.react, `${file} states the size of ${DOCUMENTED.react}`);
    for (const key of ["bundle", "wasm", "glue"]) {
      assert.ok(doc[key], `${file} states the size of ${DOCUMENTED[key]}`);
      for (const k of ["raw", "gzip"]) {
        const [stated, now] = [doc[key][k], measured[key][k]];
        assert.ok(Math.abs(stated - now) <= now * 0.02, `${file}: ${DOCUMENTED[key]} ${k} is ${now} bytes, the file says ${stated}`);
      }
    }
  }
});
