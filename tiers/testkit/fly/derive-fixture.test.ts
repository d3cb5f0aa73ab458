import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deriveFlyFixture, FLY_CLIENT_ROUTES } from './derive-fixture.ts';

const op = (schemaRef?: string) => ({
  operationId: 'X',
  description: 'prose',
  tags: ['Machines'],
  parameters: [
    { in: 'path', name: 'app_name', required: true, description: 'Fly App Name', schema: { type: 'string' } },
  ],
  ...(schemaRef
    ? {
        requestBody: {
          description: 'Request body',
          required: true,
          content: { 'application/json': { schema: { $ref: schemaRef } } },
        },
      }
    : {}),
  responses: { '200': { description: 'OK', content: {} } },
  'x-codegen-request-body-name': 'request',
});

function doc() {
  const paths: Record<string, Record<string, unknown>> = { '/apps': { get: op() } };
  for (const [method, template] of FLY_CLIENT_ROUTES)
    paths[template] = {
      ...paths[template],
      [method]: op(method === 'post' ? '#/components/schemas/Req' : undefined),
    };
  return {
    info: { description: 'the whole API' },
    paths,
    components: {
      schemas: {
        Req: {
          type: 'object',
          description: 'a request',
          properties: {
            description: { type: 'string', example: 'x' },
            inner: { $ref: '#/components/schemas/Inner' },
          },
        },
        Inner: { type: 'integer', title: 'Inner', 'x-go-name': 'Inner' },
        ErrorResponse: { type: 'object', properties: { error: { type: 'string' } } },
        Unused: { type: 'string' },
      },
    },
  };
}

describe('deriveFlyFixture', () => {
  it("keeps the client's routes and the schemas they reach, without prose", () => {
    const f = deriveFlyFixture(doc(), 'test') as {
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(Object.keys(f.paths)).not.toContain('/apps');
    expect(Object.keys(f.components.schemas)).toEqual(['ErrorResponse', 'Inner', 'Req']);
    expect(f.components.schemas['Req']).toEqual({
      type: 'object',
      properties: { description: { type: 'string' }, inner: { $ref: '#/components/schemas/Inner' } },
    });
    expect(f.components.schemas['Inner']).toEqual({ type: 'integer' });
    expect(f.paths['/apps/{app_name}/machines']?.['post']).toEqual({
      parameters: [{ in: 'path', name: 'app_name', required: true, schema: { type: 'string' } }],
      requestBody: {
        required: true,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Req' } } },
      },
      responses: { '200': { content: {} } },
    });
  });

  it('fails naming a route or a schema the document lacks', () => {
    const d = doc();
    delete d.paths['/apps/{app_name}/machines/{machine_id}/wait'];
    expect(() => deriveFlyFixture(d, 'test')).toThrow(
      /GET \/apps\/\{app_name\}\/machines\/\{machine_id\}\/wait/,
    );
    const e = doc();
    delete (e.components.schemas as Record<string, unknown>)['Inner'];
    expect(() => deriveFlyFixture(e, 'test')).toThrow(/#\/components\/schemas\/Inner/);
  });

  it('the committed fixture carries every route the client calls and no prose', () => {
    const text = readFileSync(new URL('./fly-machines-api.json', import.meta.url), 'utf8');
    const fixture = JSON.parse(text) as { paths: Record<string, Record<string, unknown>> };
    for (const [method, template] of FLY_CLIENT_ROUTES)
      expect(fixture.paths[template]?.[method]).toBeDefined();
    expect(text).not.toMatch(/"(summary|title|example|operationId|tags)"|"x-/);
  });
});
