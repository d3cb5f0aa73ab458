import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/**
 * Validates Machines API bodies against the schemas of Fly's published OpenAPI 3 document, as kept
 * in the repository's fixture `tiers/testkit/fly/fly-machines-api.json` (the routes the fly tier
 * calls and the component schemas they reach; see `derive-fixture.ts`). OpenAPI 3.0 schemas are
 * not quite JSON Schema, so the document is adapted for ajv: `$ref`s are resolved inside the document's own `components/schemas`,
 * `nullable: true` becomes a `null` type, `example` and `x-*` keys are dropped. In `strict` mode
 * (the default) objects that declare `properties` reject unknown ones, so a misspelt field in our
 * client fails instead of being ignored the way Fly's Go decoder would ignore it.
 *
 * @example
 * const v = OpenApiValidator.load(fixturePath); // e.g. FLY_MACHINES_API_FIXTURE
 * v.validateRequest('POST', '/apps/{app_name}/machines', body); // [] when valid, else messages
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Operation = {
  requestBody?: { content?: Record<string, { schema?: Json }> };
  responses?: Record<string, { content?: Record<string, { schema?: Json }> }>;
};
interface OpenApiDoc {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json> };
}

const DOC_ID = 'fly-machines';

function adapt(node: Json, strict: boolean): Json {
  if (Array.isArray(node)) return node.map((n) => adapt(n, strict));
  if (node === null || typeof node !== 'object') return node;
  const out: { [k: string]: Json } = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'example' || k.startsWith('x-')) continue;
    if (k === '$ref' && typeof v === 'string') {
      out[k] = v.startsWith('#/') ? `${DOC_ID}${v}` : v;
      continue;
    }
    // `properties` maps names to schemas: adapt each schema, keep the names.
    if (k === 'properties' && v && typeof v === 'object' && !Array.isArray(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, adapt(s, strict)]));
      continue;
    }
    out[k] = adapt(v, strict);
  }
  if (out['nullable'] === true) {
    delete out['nullable'];
    if (typeof out['type'] === 'string') out['type'] = [out['type'], 'null'];
    else if (out['$ref'] || out['allOf']) return { anyOf: [out, { type: 'null' }] };
  } else if ('nullable' in out) delete out['nullable'];
  if (strict && out['properties'] && out['additionalProperties'] === undefined)
    out['additionalProperties'] = false;
  return out;
}

function pathRegex(template: string): RegExp {
  return new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
}

function format(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const extra =
      e.keyword === 'additionalProperties'
        ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
        : '';
    return `${e.instancePath || '(body)'} ${e.message ?? e.keyword}${extra}`;
  });
}

export class OpenApiValidator {
  readonly #doc: OpenApiDoc;
  readonly #ajv: Ajv;
  readonly #cache = new Map<string, ValidateFunction>();
  readonly #routes: Array<{ template: string; re: RegExp }>;

  constructor(doc: OpenApiDoc, options: { strict?: boolean } = {}) {
    const strict = options.strict ?? true;
    this.#doc = doc;
    this.#ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    this.#ajv.addSchema(
      { $id: DOC_ID, components: { schemas: adapt(doc.components.schemas as Json, strict) } },
      DOC_ID,
    );
    this.#routes = Object.keys(doc.paths)
      .map((template) => ({ template, re: pathRegex(template) }))
      // Literal segments win over parameters: `/machines/{id}/wait` before `/machines/{id}`.
      .sort((a, b) => b.template.split('/').length - a.template.split('/').length);
    this.strict = strict;
  }

  readonly strict: boolean;

  /**
   * Reads an OpenAPI document (JSON: `{ paths, components: { schemas } }`) from `path`.
   * @throws Error naming `path` when it cannot be read or is not such a document.
   */
  static load(path: string, options: { strict?: boolean } = {}): OpenApiValidator {
    let doc: OpenApiDoc;
    try {
      doc = JSON.parse(readFileSync(path, 'utf8')) as OpenApiDoc;
    } catch (e) {
      throw new Error(`cannot read the Machines API schemas at ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!doc?.paths || !doc.components?.schemas)
      throw new Error(`${path} is not an OpenAPI document: it needs "paths" and "components.schemas"`);
    return new OpenApiValidator(doc, options);
  }

  /** The document's path template for a concrete path (`/apps/a/machines/1` → `/apps/{app_name}/machines/{machine_id}`). */
  matchPath(path: string): string | undefined {
    return this.#routes.find((r) => r.re.test(path))?.template;
  }

  operation(method: string, template: string): Operation | undefined {
    return this.#doc.paths[template]?.[method.toLowerCase()];
  }

  #compile(key: string, schema: Json): ValidateFunction {
    let fn = this.#cache.get(key);
    if (!fn) {
      fn = this.#ajv.compile(adapt(schema, this.strict) as object);
      this.#cache.set(key, fn);
    }
    return fn;
  }

  /** Validates `value` against `components/schemas/<name>`. */
  validateSchema(name: string, value: unknown): string[] {
    if (!(name in this.#doc.components.schemas)) return [`no schema named ${name}`];
    const fn = this.#compile(`schema:${name}`, { $ref: `#/components/schemas/${name}` });
    return fn(value) ? [] : format(fn.errors);
  }

  /** Problems with a request body; an operation without a JSON body schema accepts anything. */
  validateRequest(method: string, template: string, body: unknown): string[] {
    const op = this.operation(method, template);
    if (!op) return [`${method} ${template} is not in the document`];
    const schema = op.requestBody?.content?.['application/json']?.schema;
    if (!schema || body === undefined) return [];
    const fn = this.#compile(`req:${method}:${template}`, schema);
    return fn(body) ? [] : format(fn.errors);
  }

  /** Problems with a response body for `status`; a status the document lists without a schema accepts anything. */
  validateResponse(method: string, template: string, status: number, body: unknown): string[] {
    const op = this.operation(method, template);
    if (!op) return [`${method} ${template} is not in the document`];
    const r = op.responses?.[String(status)];
    if (!r) {
      // Errors the document does not list still carry Fly's ErrorResponse shape.
      return status >= 400
        ? this.validateSchema('ErrorResponse', body)
        : [`status ${status} is not documented`];
    }
    const schema = r.content?.['application/json']?.schema;
    if (!schema) return [];
    const fn = this.#compile(`res:${method}:${template}:${status}`, schema);
    return fn(body) ? [] : format(fn.errors);
  }
}
