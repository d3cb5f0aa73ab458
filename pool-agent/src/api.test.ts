import { CapacityError, ConflictError, NotFoundError, TimeoutError } from '@preview/tiers';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type AgentApiContext, createAgentApi } from './api.ts';
import { TokenSet } from './auth.ts';

const token = 'k'.repeat(32);
const auth = { authorization: `Bearer ${token}` };

/** The API over a context whose operations record what they were asked and answer `answers`. */
function api(answers: Partial<AgentApiContext> = {}) {
  const calls: string[] = [];
  const ctx: AgentApiContext = {
    tokens: new TokenSet([token]),
    claim: async (body) => {
      calls.push(`claim ${body.previewId}`);
      return {
        previewId: body.previewId,
        nodeId: 'n1',
        containerId: 'c1',
        upstream: 'u',
        warm: true,
        phase: 'ready',
        ms: 5,
      };
    },
    apply: async (id, batch) => {
      calls.push(`apply ${id} ${batch.seq}`);
      return { type: 'ack', seq: batch.seq, stage: 'applied' };
    },
    suspend: async (id) => void calls.push(`suspend ${id}`),
    resume: async (id) => void calls.push(`resume ${id}`),
    destroy: async (id) => {
      calls.push(`destroy ${id}`);
      return true;
    },
    status: async () => undefined,
    logs: async () => ['a', 'b'],
    runScript: async (id, name) => {
      calls.push(`script ${id} ${name}`);
      return { name, exitCode: 0, signal: null, timedOut: false, ms: 1, output: '' };
    },
    capacity: () => ({ slots: 4, used: 1, warm: { 'vite-react': 2 } }),
    list: () => [],
    metrics: async () => ({ body: 'preview_agent_warm 1\n', contentType: 'text/plain' }),
    log: pino({ level: 'silent' }),
    ...answers,
  };
  return { app: createAgentApi(ctx), calls };
}
const errorOf = async (res: Response) =>
  ((await res.json()) as { error: { code: string; message: string } }).error;

describe('the agent API', () => {
  it('refuses every route without an accepted token (401 unauthorized), doing nothing', async () => {
    const { app, calls } = api();
    const variants: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer nope' },
      { authorization: token },
    ];
    for (const headers of variants) {
      const res = await app.request('/v1/previews/p1', { method: 'DELETE', headers });
      expect(res.status).toBe(401);
      expect((await errorOf(res)).code).toBe('unauthorized');
    }
    expect(calls).toEqual([]);
  });

  it('answers a bad body or id with 400 naming the field and the rule, doing nothing', async () => {
    const { app, calls } = api();
    const post = (path: string, body: string) =>
      app.request(path, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body });
    const cases: Array<[Response, string, RegExp]> = [
      [await post('/v1/previews', '{'), 'invalid_body', /must be a JSON object/],
      [
        await post('/v1/previews', JSON.stringify({ previewId: 'p1', template: 'cobol', files: {} })),
        'invalid_body',
        /template/,
      ],
      [
        await post(
          '/v1/previews',
          JSON.stringify({ previewId: 'p1', template: 'vite-react', files: { '/etc/passwd': 'x' } }),
        ),
        'invalid_body',
        /files\./,
      ],
      [await post('/v1/previews/bad%20id/apply', '{}'), 'invalid_preview_id', /previewId/],
      [
        await post('/v1/previews/p1/apply', JSON.stringify({ type: 'batch', seq: -1, ops: [] })),
        'invalid_body',
        /seq/,
      ],
    ];
    for (const [res, code, message] of cases) {
      expect(res.status).toBe(400);
      const e = await errorOf(res);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
    }
    const tail = await app.request('/v1/previews/p1/logs?tail=0', { headers: auth });
    expect(tail.status).toBe(400);
    expect((await errorOf(tail)).message).toMatch(/^tail: /);
    expect(calls).toEqual([]);
  });

  it('routes each operation to the context', async () => {
    const { app, calls } = api();
    const claim = await app.request('/v1/previews', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ previewId: 'p1', template: 'vite-react', files: { 'a.js': '1' } }),
    });
    expect(claim.status).toBe(201);
    const ack = await app.request('/v1/previews/p1/apply', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ type: 'batch', seq: 3, ops: [{ op: 'delete', path: 'a.js' }] }),
    });
    expect(await ack.json()).toEqual({ type: 'ack', seq: 3, stage: 'applied' });
    expect(
      await (await app.request('/v1/previews/p1/suspend', { method: 'POST', headers: auth })).json(),
    ).toEqual({
      ok: true,
    });
    await app.request('/v1/previews/p1/resume', { method: 'POST', headers: auth });
    expect(await (await app.request('/v1/previews/p1', { method: 'DELETE', headers: auth })).json()).toEqual({
      destroyed: true,
    });
    expect(calls).toEqual(['claim p1', 'apply p1 3', 'suspend p1', 'resume p1', 'destroy p1']);
    expect(await (await app.request('/v1/capacity', { headers: auth })).json()).toEqual({
      slots: 4,
      used: 1,
      warm: { 'vite-react': 2 },
    });
    expect(await (await app.request('/v1/previews/p1/logs?tail=2', { headers: auth })).json()).toEqual({
      lines: ['a', 'b'],
    });
    const metrics = await app.request('/metrics', { headers: auth });
    expect(await metrics.text()).toBe('preview_agent_warm 1\n');
  });

  it('maps errors to the one status table; an unknown preview or route is 404', async () => {
    const fails = (e: Error) => async () => {
      throw e;
    };
    const cases: Array<[Error, number, string]> = [
      [new ConflictError('preview_failed', 'preview p1 failed: oom'), 409, 'preview_failed'],
      [new CapacityError('capacity', 'node full'), 503, 'capacity'],
      [new TimeoutError('timeout', 'not ready'), 504, 'timeout'],
      [new NotFoundError('preview_not_found', 'no p1'), 404, 'preview_not_found'],
      [new Error('secret detail'), 500, 'internal'],
    ];
    for (const [error, status, code] of cases) {
      const { app } = api({ suspend: fails(error) });
      const res = await app.request('/v1/previews/p1/suspend', { method: 'POST', headers: auth });
      expect(res.status).toBe(status);
      const e = await errorOf(res);
      expect(e.code).toBe(code);
      if (status === 500) expect(e.message).not.toMatch(/secret/);
    }
    const { app } = api();
    const unknown = await app.request('/v1/previews/p9/status', { headers: auth });
    expect(unknown.status).toBe(404);
    expect((await errorOf(unknown)).code).toBe('preview_not_found');
    const route = await app.request('/v2/nothing', { headers: auth });
    expect(route.status).toBe(404);
  });
});
