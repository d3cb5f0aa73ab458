import { captureLog } from '@preview/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness, VITE_FILES } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';

describe('router logs: every line about a preview names it (previewId) and its node (nodeId)', () => {
  let h: Harness;
  const captured = captureLog();
  const log = pino({ level: 'info' }, captured.stream);
  beforeAll(async () => {
    h = await createHarness({
      log,
      tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('create, suspend, resume and delete each log the state with previewId and nodeId', async () => {
    const call = (path: string, method = 'POST', body?: object) =>
      h.router.app.request(path, {
        method,
        headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    const res = await call('/v1/previews', 'POST', { files: VITE_FILES, projectId: 'log-test' });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    await expect
      .poll(async () => ((await (await call(`/v1/previews/${id}`, 'GET')).json()) as { state: string }).state)
      .toBe('ready');
    expect((await call(`/v1/previews/${id}/suspend`)).status).toBe(200);
    expect((await call(`/v1/previews/${id}/resume`)).status).toBe(200);
    expect((await call(`/v1/previews/${id}`, 'DELETE')).status).toBeLessThan(300);

    const states = captured.lines.filter((l) => l['previewId'] === id && typeof l['state'] === 'string');
    expect(states.map((l) => l['state'])).toEqual(
      expect.arrayContaining(['provisioning', 'ready', 'suspended', 'ended']),
    );
    for (const l of states) {
      expect(l['msg']).toBe(`preview ${l['state']}`);
      expect(l).toHaveProperty('nodeId');
      expect(l['projectId']).toBe('log-test');
    }
    // Once placed on the node, the node is named until the sandbox is gone.
    for (const l of states.filter((s) => s['state'] === 'ready' || s['state'] === 'suspended'))
      expect(l['nodeId']).toBe(h.nodeId);
  });
});
