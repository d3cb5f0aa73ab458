/**
 * Derives `fly-machines-api.json` (the schemas the fake Machines API validates against) from Fly's
 * published OpenAPI 3 document for the Machines API (superfly/fly-openapi-sdk, `go/api/openapi.yaml`).
 *
 * It keeps shapes only: for each route the fly tier's client calls (and `GET …/lease`, which the
 * fake also serves), the operation's parameters (`in`, `name`, `required`, `schema`), its JSON
 * request body schema and its responses' JSON schemas; then every component schema those reach
 * through `$ref` (plus `ErrorResponse`, the body of every Fly error). Prose (`description`,
 * `summary`, `title`, `example`, tags, operation ids, `x-*` extensions) is dropped; a property that
 * happens to be *named* `description` is kept, since it is part of a shape.
 *
 * Usage (from the repository root; the document is not part of this repository):
 *
 *     node --import tsx tiers/testkit/fly/derive-fixture.ts <openapi.yaml> <source note> \
 *       > tiers/testkit/fly/fly-machines-api.json
 *     npx biome format --write tiers/testkit/fly/fly-machines-api.json
 *
 * `suspend` is not in the January 2024 document; the fake serves it from Fly's documentation
 * (`POST /apps/{app}/machines/{id}/suspend` → `{ ok: true }`).
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** The routes the client in `tiers/src/fly/machines-client.ts` calls, and `GET lease` (the fake serves it). */
export const FLY_CLIENT_ROUTES: ReadonlyArray<readonly [method: string, template: string]> = [
  ['get', '/apps/{app_name}/machines'],
  ['post', '/apps/{app_name}/machines'],
  ['get', '/apps/{app_name}/machines/{machine_id}'],
  ['delete', '/apps/{app_name}/machines/{machine_id}'],
  ['get', '/apps/{app_name}/machines/{machine_id}/wait'],
  ['post', '/apps/{app_name}/machines/{machine_id}/start'],
  ['post', '/apps/{app_name}/machines/{machine_id}/stop'],
  ['post', '/apps/{app_name}/machines/{machine_id}/lease'],
  ['get', '/apps/{app_name}/machines/{machine_id}/lease'],
  ['delete', '/apps/{app_name}/machines/{machine_id}/lease'],
];

const PROSE = new Set(['description', 'summary', 'title', 'example', 'examples', 'externalDocs']);

const isObject = (v: Json | undefined): v is JsonObject => !!v && typeof v === 'object' && !Array.isArray(v);

/** A schema without prose; `properties` maps names to schemas, so its keys are kept as they are. */
function shape(node: Json): Json {
  if (Array.isArray(node)) return node.map(shape);
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) {
    if (PROSE.has(k) || k.startsWith('x-')) continue;
    if (k === 'properties' && isObject(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, shape(s)]));
      continue;
    }
    out[k] = shape(v);
  }
  return out;
}

function jsonContent(content: Json | undefined): JsonObject {
  const schema = isObject(content) ? content['application/json'] : undefined;
  return isObject(schema) && schema['schema'] !== undefined
    ? { 'application/json': { schema: shape(schema['schema']) } }
    : {};
}

function operation(op: JsonObject): JsonObject {
  const out: JsonObject = {};
  if (Array.isArray(op['parameters']))
    out['parameters'] = op['parameters'].filter(isObject).map((p) => ({
      in: p['in'] ?? null,
      name: p['name'] ?? null,
      required: p['required'] ?? false,
      schema: shape(p['schema'] ?? {}),
    }));
  const body = op['requestBody'];
  if (isObject(body))
    out['requestBody'] = { required: body['required'] ?? false, content: jsonContent(body['content']) };
  const responses: JsonObject = {};
  for (const [status, r] of Object.entries(isObject(op['responses']) ? op['responses'] : {}))
    responses[status] = { content: jsonContent(isObject(r) ? r['content'] : undefined) };
  out['responses'] = responses;
  return out;
}

function refsOf(node: Json, into: Set<string>): void {
  if (Array.isArray(node)) for (const n of node) refsOf(n, into);
  else if (isObject(node))
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/'))
        into.add(v.slice('#/components/schemas/'.length));
      else refsOf(v, into);
    }
}

/**
 * The fixture for `doc` (a parsed OpenAPI 3 document): `{ source, paths, components: { schemas } }`.
 * @throws Error naming a route of {@link FLY_CLIENT_ROUTES} or a `$ref` the document lacks.
 */
export function deriveFlyFixture(document: object, source: string): JsonObject {
  const doc = document as JsonObject;
  const docPaths = isObject(doc['paths']) ? doc['paths'] : {};
  const components = isObject(doc['components']) ? doc['components'] : {};
  const docSchemas = isObject(components['schemas']) ? components['schemas'] : {};
  const paths: Record<string, JsonObject> = {};
  for (const [method, template] of FLY_CLIENT_ROUTES) {
    const ops = docPaths[template];
    const op = isObject(ops) ? ops[method] : undefined;
    if (!isObject(op)) throw new Error(`the document has no ${method.toUpperCase()} ${template}`);
    paths[template] = { ...paths[template], [method]: operation(op) };
  }
  const wanted = new Set<string>(['ErrorResponse']);
  refsOf(paths, wanted);
  const schemas: JsonObject = {};
  const queue = [...wanted];
  while (queue.length) {
    const name = queue.shift()!;
    if (name in schemas) continue;
    const s = docSchemas[name];
    if (s === undefined) throw new Error(`$ref #/components/schemas/${name} is not in the document`);
    schemas[name] = shape(s);
    const more = new Set<string>();
    refsOf(schemas[name], more);
    for (const m of more) if (!(m in schemas)) queue.push(m);
  }
  const sorted = Object.fromEntries(
    Object.keys(schemas)
      .sort()
      .map((k) => [k, schemas[k]!]),
  );
  return { source, paths, components: { schemas: sorted } };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  const [file, source] = process.argv.slice(2);
  if (!file || !source) {
    console.error('usage: derive-fixture.ts <openapi.yaml> <source note>');
    process.exit(2);
  }
  const doc = parse(readFileSync(file, 'utf8')) as JsonObject;
  process.stdout.write(`${JSON.stringify(deriveFlyFixture(doc, source), null, 2)}\n`);
}
