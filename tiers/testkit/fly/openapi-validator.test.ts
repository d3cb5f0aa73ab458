import { describe, expect, it } from 'vitest';
import { FLY_MACHINES_API_FIXTURE, OpenApiValidator } from './index.ts';

const MACHINES = '/apps/{app_name}/machines';

describe('OpenApiValidator (Fly Machines OpenAPI document)', () => {
  const v = OpenApiValidator.load(FLY_MACHINES_API_FIXTURE);

  it('maps concrete paths to the document templates, literal segments first', () => {
    expect(v.matchPath('/apps/a/machines')).toBe(MACHINES);
    expect(v.matchPath('/apps/a/machines/m1')).toBe(`${MACHINES}/{machine_id}`);
    expect(v.matchPath('/apps/a/machines/m1/wait')).toBe(`${MACHINES}/{machine_id}/wait`);
    expect(v.matchPath('/apps/a/machines/m1/lease')).toBe(`${MACHINES}/{machine_id}/lease`);
    expect(v.matchPath('/nope')).toBeUndefined();
  });

  it('accepts a create request of the shape the fly tier sends', () => {
    const body = {
      region: 'ams',
      config: {
        image: 'registry.fly.io/preview:1',
        env: { PREVIEW_TEMPLATE: 'vite-react' },
        metadata: { preview_id: 'p1', user_id: 'u1' },
        guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 1024 },
        services: [
          {
            protocol: 'tcp',
            internal_port: 3000,
            autostart: true,
            ports: [{ port: 443, handlers: ['tls', 'http'] }],
          },
        ],
        restart: { policy: 'on-failure', max_retries: 2 },
        auto_destroy: true,
      },
    };
    expect(v.validateRequest('POST', MACHINES, body)).toEqual([]);
  });

  it('rejects a wrong body: wrong types, unknown fields, bad enums', () => {
    const problems = v.validateRequest('POST', MACHINES, {
      region: 7,
      config: { image: 'x', guest: { cpus: 'two' }, restart: { policy: 'sometimes' }, envv: {} },
    });
    expect(problems.join('\n')).toMatch(/\/region must be string/);
    expect(problems.join('\n')).toMatch(/\/config\/guest\/cpus must be integer/);
    expect(problems.join('\n')).toMatch(
      /\/config\/restart\/policy must be equal to one of the allowed values/,
    );
    expect(problems.join('\n')).toMatch(/additional properties \(envv\)/);
    expect(v.validateRequest('POST', MACHINES, { config: { image: 'x', env: { A: 1 } } })).toHaveLength(1);
  });

  it('validates responses, including error bodies with Fly status codes', () => {
    const machine = { id: 'm', state: 'started', region: 'ams', instance_id: 'I', config: { image: 'x' } };
    expect(v.validateResponse('GET', MACHINES, 200, [machine])).toEqual([]);
    expect(v.validateResponse('GET', MACHINES, 200, [{ ...machine, state: 3 }])).not.toEqual([]);
    expect(
      v.validateResponse('POST', `${MACHINES}/{machine_id}/lease`, 200, { nonce: 'n', expires_at: 1 }),
    ).toEqual([]);
    expect(
      v.validateResponse('POST', `${MACHINES}/{machine_id}/lease`, 200, { nonce: 'n', expires_at: 'soon' }),
    ).not.toEqual([]);
    expect(
      v.validateResponse('POST', MACHINES, 412, { error: 'x', status: 'insufficient_capacity' }),
    ).toEqual([]);
    expect(v.validateResponse('POST', MACHINES, 412, { error: 'x', status: 'out_of_luck' })).not.toEqual([]);
  });

  it('handles OpenAPI 3.0 nullable and rewrites component $refs', () => {
    const doc = {
      paths: {
        '/x': {
          post: {
            requestBody: { content: { 'application/json': { schema: { $ref: '#/components/schemas/A' } } } },
          },
        },
      },
      components: {
        schemas: {
          A: {
            type: 'object',
            properties: { b: { $ref: '#/components/schemas/B' }, n: { type: 'integer', nullable: true } },
          },
          B: { type: 'string', nullable: true, example: 'ignored' },
        },
      },
    };
    const own = new OpenApiValidator(doc as never);
    expect(own.validateRequest('POST', '/x', { b: null, n: null })).toEqual([]);
    expect(own.validateRequest('POST', '/x', { b: 'ok', n: 3 })).toEqual([]);
    expect(own.validateRequest('POST', '/x', { b: 4 })).not.toEqual([]);
    expect(own.validateRequest('POST', '/x', { n: 'three' })).not.toEqual([]);
  });
});
