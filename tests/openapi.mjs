// docs/openapi.json for the tests that hold it to the code (tests/unit/openapi.test.mjs, the
// document's structure; tests/e2e/openapi.test.mjs, the real edge's answers): its $refs resolved,
// within the document and into docs/protocol.schema.json, its schemas compiled with ajv (JSON
// Schema 2020-12, the dialect of OpenAPI 3.1), and an answer (method, path, status, headers,
// body) checked against the operation and status that describe it.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The documents, by the name the OpenAPI document's external $refs use (relative to docs/). */
export const documents = {
  "openapi.json": JSON.parse(readFileSync(join(ROOT, "docs/openapi.json"), "utf8")),
  "protocol.schema.json": JSON.parse(readFileSync(join(ROOT, "docs/protocol.schema.json"), "utf8")),
};
export const openapi = documents["openapi.json"];

/** The operations an OpenAPI 3.1 Path Item may hold. */
export const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/**
 * What `ref` names, read from `base` (a document name) when the ref has no document part:
 * `{ file, value }`, `value` undefined when the document or the pointer does not exist.
 */
export function resolve(ref, base = "openapi.json") {
  const hash = ref.indexOf("#");
  const file = hash === 0 ? base : hash < 0 ? ref : ref.slice(0, hash);
  let value = documents[file];
  const pointer = hash < 0 ? "" : ref.slice(hash + 1);
  if (pointer !== "" && !pointer.startsWith("/")) return { file, value: undefined };
  for (const token of pointer.split("/").slice(1)) {
    const key = decodeURIComponent(token).replaceAll("~1", "/").replaceAll("~0", "~");
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, key)) return { file, value: undefined };
    value = value[key];
  }
  return { file, value };
}

/** Every `$ref` in `node` as `{ at, ref }`, `at` the JSON pointer of the object holding it. */
export function* refsIn(node, at = "#") {
  if (node === null || typeof node !== "object") return;
  if (typeof node.$ref === "string") yield { at, ref: node.$ref };
  for (const [key, value] of Object.entries(node)) yield* refsIn(value, `${at}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`);
}

/** A Reference Object followed, within the OpenAPI document, to what it names (a response, a header, …). */
export function deref(node) {
  const seen = new Set();
  while (node && typeof node.$ref === "string") {
    if (seen.has(node.$ref)) throw new Error(`a $ref cycle through ${node.$ref}`);
    seen.add(node.$ref);
    node = resolve(node.$ref).value;
  }
  return node;
}

// Schemas: the OpenAPI document's refs made absolute under one invented base, so that ajv finds
// both documents: `#/components/schemas/X` becomes `<base>openapi.json#/$defs/X` (the component
// schemas are registered as one schema's $defs), `protocol.schema.json#/…` the protocol schema,
// registered under that name.
const BASE = "https://roomcast.invalid/docs/";
const SUBSCHEMA = ["items", "not", "additionalProperties", "contains", "if", "then", "else", "propertyNames"];
const SUBSCHEMA_MAPS = ["properties", "$defs", "patternProperties", "dependentSchemas"];
const SUBSCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "prefixItems"];

function absoluteRef(ref) {
  if (ref.startsWith("#/components/schemas/")) return `${BASE}openapi.json#/$defs/${ref.slice("#/components/schemas/".length)}`;
  if (ref.startsWith("protocol.schema.json#")) return `${BASE}${ref}`;
  throw new Error(`a schema $ref that is neither a component schema nor protocol.schema.json: ${ref}`);
}

/**
 * A schema of the OpenAPI document, its refs made absolute. `closed`: every object schema that
 * names its properties and says nothing about others refuses others (`additionalProperties:
 * false`), so that an answer holding a field the document does not describe fails. (The
 * document itself leaves them open: clients must ignore fields they do not know.)
 */
export function prepare(schema, closed) {
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "$ref") out.$ref = absoluteRef(value);
    else if (SUBSCHEMA.includes(key)) out[key] = prepare(value, closed);
    else if (SUBSCHEMA_MAPS.includes(key)) out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, prepare(v, closed)]));
    else if (SUBSCHEMA_LISTS.includes(key)) out[key] = value.map((s) => prepare(s, closed));
    else out[key] = value;
  }
  if (closed && out.properties && !("additionalProperties" in out) && !("unevaluatedProperties" in out)) out.additionalProperties = false;
  return out;
}

/**
 * A compiler of the OpenAPI document's schemas (strict mode: an unknown keyword or a type slip in
 * the document is an error), each compiled once. `closed` as in [`prepare`].
 */
export function schemaCompiler({ closed = false } = {}) {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  ajv.addSchema({ ...documents["protocol.schema.json"], $id: `${BASE}protocol.schema.json` });
  const components = openapi.components?.schemas ?? {};
  ajv.addSchema({
    $id: `${BASE}openapi.json`,
    $defs: Object.fromEntries(Object.entries(components).map(([name, s]) => [name, prepare(s, closed)])),
  });
  const cache = new Map();
  const compile = (schema) => {
    if (!cache.has(schema)) cache.set(schema, ajv.compile({ $id: `${BASE}inline/${cache.size}`, ...prepare(schema, closed) }));
    return cache.get(schema);
  };
  return { ajv, compile, errors: (validate) => ajv.errorsText(validate.errors, { separator: "; " }) };
}

/** `/rooms/{room}/ws` as a pattern: a template parameter is one path segment (empty included). */
function templatePattern(template) {
  const parts = template.split(/\{[^}]+\}/).map((s) => s.replace(/[.*+?^$()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join("[^/]*")}$`);
}

/**
 * What describes `method` on `path` (no query): `{ key, responses }`, key `GET /rooms/{room}/ws`
 * for an operation, `otherwise method` for a method its path does not list, `otherwise path` for
 * a path the document does not list (the root's `x-roomcast-otherwise`).
 */
export function describe(method, path) {
  const m = method.toLowerCase();
  const otherwise = openapi["x-roomcast-otherwise"] ?? {};
  const concrete = Object.keys(openapi.paths).filter((t) => !t.includes("{"));
  const templated = Object.keys(openapi.paths).filter((t) => t.includes("{"));
  // Concrete paths are matched before templated ones (OpenAPI 3.1, Paths Object).
  for (const template of [...concrete, ...templated]) {
    if (!templatePattern(template).test(path)) continue;
    const operation = openapi.paths[template][m];
    if (operation) return { key: `${method.toUpperCase()} ${template}`, responses: operation.responses };
    return { key: "otherwise method", responses: otherwise.method };
  }
  return { key: "otherwise path", responses: otherwise.path };
}

/** Every answer the document lists, as `<describe key> <status>`. */
export function documentedAnswers() {
  const answers = [];
  for (const [template, item] of Object.entries(openapi.paths)) {
    for (const m of METHODS) {
      for (const status of Object.keys(item[m]?.responses ?? {})) answers.push(`${m.toUpperCase()} ${template} ${status}`);
    }
  }
  for (const kind of ["path", "method"]) {
    for (const status of Object.keys(openapi["x-roomcast-otherwise"]?.[kind] ?? {})) answers.push(`otherwise ${kind} ${status}`);
  }
  return answers;
}

/** A header's text as its schema's type: an integer header is digits. */
function headerValue(text, schema) {
  if ((schema?.type === "integer" || schema?.type === "number") && /^-?[0-9]+(\.[0-9]+)?$/.test(text)) return Number(text);
  return text;
}

/**
 * Checks one answer against the document: `{ key, status, problems }`, `problems` empty when the
 * status is described for the operation (or by `x-roomcast-otherwise`), every required header is
 * there, every described header present validates, the content type is a described one and the
 * body validates against its schema (or is empty when no content is described).
 * `headers`: a fetch `Headers` or a plain object with lower-case names (node's http).
 */
export function checkAnswer({ method, path, status, headers, text }, compiler) {
  const { key, responses } = describe(method, path);
  const get = (name) => (typeof headers?.get === "function" ? headers.get(name) : headers?.[name.toLowerCase()]) ?? null;
  const response = deref(responses?.[String(status)]);
  if (!response) return { key, status, problems: [`${status} is not described for ${key}`] };
  const problems = [];
  for (const [name, described] of Object.entries(response.headers ?? {})) {
    const header = deref(described);
    const value = get(name);
    if (value === null) {
      if (header.required) problems.push(`the required header ${name} is missing`);
      continue;
    }
    const validate = compiler.compile(header.schema ?? {});
    if (!validate(headerValue(value, header.schema)))
      problems.push(`header ${name}: ${JSON.stringify(value)}: ${compiler.errors(validate)}`);
  }
  const media = Object.keys(response.content ?? {});
  if (media.length === 0) {
    if (text) problems.push(`no body is described, and the answer has one: ${text.slice(0, 200)}`);
    return { key, status, problems };
  }
  const type = (get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (!media.includes(type)) {
    problems.push(`content type ${JSON.stringify(type)} is not described (${media.join(", ")})`);
    return { key, status, problems };
  }
  if (type === "application/json") {
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      problems.push(`the body is not JSON: ${text.slice(0, 200)}`);
      return { key, status, problems };
    }
    const validate = compiler.compile(response.content[type].schema ?? {});
    if (!validate(body)) problems.push(`body: ${compiler.errors(validate)}: ${text.slice(0, 300)}`);
  }
  return { key, status, problems };
}
