// docs/openapi.json, the HTTP API's machine-readable description, on its own (no server): a
// structurally valid OpenAPI 3.1 document, every $ref resolving (within it and into
// docs/protocol.schema.json), every schema compiling in ajv's strict mode, its examples valid,
// every refusal the error body with the code docs/PROTOCOL.md's table gives its status, and its
// operations the edge's routes. tests/e2e/openapi.test.mjs holds the real edge's answers to it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import { deref, documentedAnswers, METHODS, openapi, refsIn, resolve, schemaCompiler } from "../openapi.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const protocolDoc = readFileSync(join(ROOT, "docs/PROTOCOL.md"), "utf8");

/**
 * The shape of an OpenAPI 3.1 document, as far as this one uses it: the required fields of each
 * object (OpenAPI Specification 3.1.0, section 4.8), and the forms of status codes, parameter
 * locations and security schemes. Reference Objects are accepted wherever the specification
 * allows them.
 */
const or$ref = (schema) => ({ anyOf: [{ type: "object", required: ["$ref"], properties: { $ref: { type: "string" } } }, schema] });
const SHAPE = {
  $defs: {
    parameter: or$ref({
      type: "object",
      required: ["name", "in"],
      properties: {
        name: { type: "string", minLength: 1 },
        in: { enum: ["query", "header", "path", "cookie"] },
        required: { type: "boolean" },
        schema: { type: "object" },
        content: { type: "object" },
      },
      oneOf: [{ required: ["schema"] }, { required: ["content"] }],
      // A path parameter is required: true.
      anyOf: [{ properties: { in: { not: { const: "path" } } } }, { required: ["required"], properties: { required: { const: true } } }],
    }),
    header: or$ref({ type: "object", required: ["schema"], properties: { required: { type: "boolean" }, schema: { type: "object" } } }),
    mediaTypes: {
      type: "object",
      propertyNames: { pattern: "^[a-z]+/[a-z0-9.+-]+$" },
      additionalProperties: {
        type: "object",
        required: ["schema"],
        properties: { schema: { type: "object" }, examples: { type: "object" } },
      },
    },
    response: or$ref({
      type: "object",
      required: ["description"],
      properties: {
        description: { type: "string" },
        headers: { type: "object", additionalProperties: { $ref: "#/$defs/header" } },
        content: { $ref: "#/$defs/mediaTypes" },
      },
    }),
    responses: {
      type: "object",
      minProperties: 1,
      propertyNames: { pattern: "^([1-5][0-9]{2}|[1-5]XX|default)$" },
      additionalProperties: { $ref: "#/$defs/response" },
    },
    operation: {
      type: "object",
      required: ["responses"],
      properties: {
        operationId: { type: "string" },
        tags: { type: "array", items: { type: "string" } },
        parameters: { type: "array", items: { $ref: "#/$defs/parameter" } },
        requestBody: or$ref({ type: "object", required: ["content"], properties: { content: { $ref: "#/$defs/mediaTypes" } } }),
        responses: { $ref: "#/$defs/responses" },
        security: { type: "array", items: { type: "object", additionalProperties: { type: "array", items: { type: "string" } } } },
      },
    },
    pathItem: {
      type: "object",
      properties: {
        parameters: { type: "array", items: { $ref: "#/$defs/parameter" } },
        ...Object.fromEntries(METHODS.map((m) => [m, { $ref: "#/$defs/operation" }])),
      },
    },
  },
  type: "object",
  required: ["openapi", "info", "paths"],
  properties: {
    openapi: { type: "string", pattern: "^3\\.1\\.[0-9]+$" },
    info: {
      type: "object",
      required: ["title", "version"],
      properties: {
        title: { type: "string" },
        version: { type: "string" },
        license: {
          type: "object",
          required: ["name"],
          not: { required: ["identifier", "url"] },
        },
      },
    },
    servers: { type: "array", items: { type: "object", required: ["url"] } },
    paths: { type: "object", propertyNames: { pattern: "^/" }, additionalProperties: { $ref: "#/$defs/pathItem" } },
    components: {
      type: "object",
      properties: {
        schemas: { type: "object" },
        responses: { type: "object", additionalProperties: { $ref: "#/$defs/response" } },
        parameters: { type: "object", additionalProperties: { $ref: "#/$defs/parameter" } },
        headers: { type: "object", additionalProperties: { $ref: "#/$defs/header" } },
        securitySchemes: {
          type: "object",
          additionalProperties: {
            type: "object",
            required: ["type"],
            anyOf: [
              { required: ["scheme"], properties: { type: { const: "http" } } },
              { required: ["name", "in"], properties: { type: { const: "apiKey" }, in: { enum: ["query", "header", "cookie"] } } },
              { properties: { type: { enum: ["mutualTLS", "oauth2", "openIdConnect"] } } },
            ],
          },
        },
      },
    },
  },
};

/** Every operation as `[template, method, operation, pathItem]`. */
const operations = () =>
  Object.entries(openapi.paths).flatMap(([template, item]) => METHODS.filter((m) => item[m]).map((m) => [template, m, item[m], item]));

test("docs/openapi.json is a structurally valid OpenAPI 3.1 document", () => {
  // strictRequired off: the shape requires fields inside `oneOf` and `not` branches by design.
  const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
  const validate = ajv.compile(SHAPE);
  assert.ok(validate(openapi), ajv.errorsText(validate.errors, { separator: "\n" }));
  // The shape check can fail: a document missing what OpenAPI requires is refused.
  const broken = structuredClone(openapi);
  delete broken.info.version;
  const anOperation = Object.values(broken.paths)[0];
  delete anOperation[METHODS.find((m) => anOperation[m])].responses;
  assert.equal(validate(broken), false);
  assert.deepEqual(new Set(validate.errors.map((e) => e.keyword)), new Set(["required"]));

  const ids = new Set();
  for (const [template, method, operation, item] of operations()) {
    const where = `${method.toUpperCase()} ${template}`;
    assert.ok(operation.operationId && !ids.has(operation.operationId), `${where}: a unique operationId`);
    ids.add(operation.operationId);
    // Every template parameter is declared as a path parameter, and every path parameter is in the template.
    const declared = [...(item.parameters ?? []), ...(operation.parameters ?? [])].map(deref).filter((p) => p.in === "path");
    const inTemplate = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    assert.deepEqual(declared.map((p) => p.name).sort(), inTemplate.sort(), `${where}: path parameters`);
    // Security requirements name declared schemes; tags are declared.
    for (const requirement of operation.security ?? openapi.security ?? []) {
      for (const scheme of Object.keys(requirement)) assert.ok(openapi.components.securitySchemes[scheme], `${where}: scheme ${scheme}`);
    }
    for (const tag of operation.tags ?? [])
      assert.ok(
        openapi.tags.some((t) => t.name === tag),
        `${where}: tag ${tag}`,
      );
    // Every response with a body describes it as JSON; a response without one has no content.
    for (const [status, response] of Object.entries(operation.responses)) {
      const media = Object.keys(deref(response).content ?? {});
      if (["101", "204"].includes(status)) assert.deepEqual(media, [], `${where} ${status}: no body`);
      else assert.deepEqual(media, ["application/json"], `${where} ${status}: a JSON body`);
    }
  }
  assert.ok(ids.size >= 10, `only ${ids.size} operations`);
});

test("every $ref resolves, within the document and into docs/protocol.schema.json", () => {
  const refs = [...refsIn(openapi)];
  assert.ok(refs.length > 50, `only ${refs.length} refs`);
  const unresolved = [];
  const external = new Set();
  for (const { at, ref } of refs) {
    const { file, value } = resolve(ref);
    if (value === undefined) unresolved.push(`${at}: ${ref}`);
    if (file !== "openapi.json") external.add(ref);
  }
  // The protocol schema's parts that are referred to resolve their own refs too.
  for (const ref of external) {
    for (const inner of refsIn(resolve(ref).value)) {
      if (resolve(inner.ref, "protocol.schema.json").value === undefined) unresolved.push(`${ref} ${inner.at}: ${inner.ref}`);
    }
  }
  assert.deepEqual(unresolved, []);
  assert.ok(external.size > 0, "the history page's messages are the protocol schema's message frames");
  // The check can fail.
  assert.equal(resolve("#/components/schemas/Nope").value, undefined);
  assert.equal(resolve("protocol.schema.json#/$defs/nope").value, undefined);
  assert.equal(resolve("elsewhere.json#/x").value, undefined);
});

/** Every schema in the document, with where it is. */
function* schemas() {
  for (const [name, schema] of Object.entries(openapi.components.schemas)) yield [`components.schemas.${name}`, schema];
  for (const [name, header] of Object.entries(openapi.components.headers ?? {})) yield [`components.headers.${name}`, header.schema];
  for (const [name, p] of Object.entries(openapi.components.parameters ?? {})) yield [`components.parameters.${name}`, p.schema];
  const responses = [
    ...operations().flatMap(([t, m, op]) => Object.entries(op.responses).map(([s, r]) => [`${m} ${t} ${s}`, r])),
    ...Object.entries(openapi.components.responses ?? {}),
  ];
  for (const [where, response] of responses) {
    if (response.$ref) continue;
    for (const [type, media] of Object.entries(response.content ?? {})) yield [`${where} ${type}`, media.schema];
    for (const [name, header] of Object.entries(response.headers ?? {})) if (!header.$ref) yield [`${where} header ${name}`, header.schema];
  }
  for (const [t, m, op, item] of operations()) {
    for (const p of [...(item.parameters ?? []), ...(op.parameters ?? [])]) if (!p.$ref) yield [`${m} ${t} ${p.name}`, p.schema];
    for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) yield [`${m} ${t} request ${type}`, media.schema];
  }
}

test("every schema compiles in ajv's strict mode, open and closed to undescribed fields", () => {
  let count = 0;
  for (const closed of [false, true]) {
    const compiler = schemaCompiler({ closed });
    for (const [where, schema] of schemas()) {
      assert.doesNotThrow(() => compiler.compile(schema), `${where} (closed: ${closed})`);
      count++;
    }
  }
  assert.ok(count > 60, `only ${count} schemas`);
});

test("every example validates against its schema", () => {
  const compiler = schemaCompiler({ closed: true });
  let count = 0;
  const media = [
    ...operations().flatMap(([t, m, op]) => Object.entries(op.requestBody?.content ?? {}).map(([, c]) => [`${m} ${t} request`, c])),
    ...operations().flatMap(([t, m, op]) =>
      Object.entries(op.responses).flatMap(([s, r]) => Object.values(deref(r).content ?? {}).map((c) => [`${m} ${t} ${s}`, c])),
    ),
  ];
  for (const [where, content] of media) {
    for (const [name, example] of Object.entries(content.examples ?? {})) {
      const validate = compiler.compile(content.schema);
      assert.ok(validate(example.value), `${where} example ${name}: ${compiler.errors(validate)}`);
      count++;
    }
  }
  assert.ok(count >= 10, `only ${count} examples`);
  // The check can fail: a closed schema refuses a field it does not describe.
  const published = compiler.compile(openapi.components.schemas.Published);
  assert.equal(published({ seq: 1, extra: true }), false);
  assert.equal(
    schemaCompiler().compile(openapi.components.schemas.Published)({ seq: 1, extra: true }),
    true,
    "the document itself is open",
  );
});

/** docs/PROTOCOL.md's *Errors over HTTP* table: status → code. */
function errorTable() {
  const section = protocolDoc.slice(protocolDoc.indexOf("### Errors over HTTP"), protocolDoc.indexOf("## Limits and settings"));
  return new Map([...section.matchAll(/^\| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [m[1], m[2]]));
}

test("every refusal is the error body, with the code PROTOCOL.md's table gives its status", () => {
  const table = errorTable();
  assert.ok(table.size >= 10, `the table in docs/PROTOCOL.md has ${table.size} rows`);
  const compiler = schemaCompiler({ closed: true });
  const refusals = [];
  for (const [t, m, op] of operations()) for (const [s, r] of Object.entries(op.responses)) refusals.push([`${m} ${t}`, s, r]);
  for (const kind of ["path", "method"])
    for (const [s, r] of Object.entries(openapi["x-roomcast-otherwise"][kind])) refusals.push([kind, s, r]);
  const statuses = new Set();
  for (const [where, status, response] of refusals) {
    if (Number(status) < 400) continue;
    statuses.add(status);
    assert.ok(table.has(status), `${where} ${status}: a status docs/PROTOCOL.md's error table does not list`);
    const validate = compiler.compile(deref(response).content["application/json"].schema);
    const body = (code) => ({ error: { code, message: "why" } });
    assert.ok(validate(body(table.get(status))), `${where} ${status}: ${compiler.errors(validate)}`);
    const other = status === "400" ? "forbidden" : "bad_request";
    if (table.get(status) !== other) assert.equal(validate(body(other)), false, `${where} ${status} takes only its own code`);
    assert.equal(validate({ error: { code: table.get(status) } }), false, `${where} ${status}: message is required`);
  }
  assert.deepEqual([...statuses].sort(), [...table.keys()].sort(), "the document and the table name the same statuses");
});

test("the document's operations are the edge's routes, and PROTOCOL.md links it", () => {
  // protocol/src/api/route.rs documents each endpoint as "`METHOD /rooms/:room/…`".
  const routes = readFileSync(join(ROOT, "protocol/src/api/route.rs"), "utf8");
  const endpoints = new Set(
    [...routes.matchAll(/`(GET|POST|DELETE) +(\/rooms\/:room\/[a-z/]+)`/g)].map((m) => `${m[1]} ${m[2].replace(":room", "{room}")}`),
  );
  assert.ok(endpoints.size >= 8, `route.rs names ${endpoints.size} endpoints`);
  endpoints.add("GET /dev/token");
  endpoints.add("DELETE /sessions/{user}");
  endpoints.add("OPTIONS /rooms/{room}/history");
  const documented = new Set(operations().map(([t, m]) => `${m.toUpperCase()} ${t}`));
  assert.deepEqual([...documented].sort(), [...endpoints].sort());
  assert.ok(protocolDoc.includes("](openapi.json)"), "docs/PROTOCOL.md links docs/openapi.json");
  assert.ok(documentedAnswers().length > 40);
});
