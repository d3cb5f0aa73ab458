import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness, VITE_FILES } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';

/**
 * Issue 11, smaller items: `/metrics` behind `METRICS_TOKEN`, and a preview whose sandbox stopped
 * (the agent saw the container exit with OOMKilled) reads `failed` with the reason in GET and SSE as
 * soon as the node reports it.
 */
const METRICS_TOKEN = 'metrics-token-for-tests-0123456789';
let h: Harness;

beforeAll(async () => {
  h = await createHarness({
    env: { METRICS_TOKEN },
    tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
  });
});
afterAll(async () => {
  await h?.close();
});

describe('/metrics with METRICS_TOKEN', () => {
  it('answers only the bearer of the token', async () => {
    const none = await h.router.app.request('/metrics');
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: { code: 'metrics_token_required' } });
    expect((await h.router.app.request('/metrics', { headers: bearer('wrong-token') })).status).toBe(401);
    expect((await h.router.app.request('/metrics', { headers: bearer(h.alice.jwt) })).status).toBe(401);
    const ok = await h.router.app.request('/metrics', { headers: bearer(METRICS_TOKEN) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('preview_');
  });
});

describe('a node reports a preview whose sandbox stopped', () => {
  it('the preview reads failed with the reason in GET and in the SSE stream', async () => {
    const created = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: VITE_FILES, serverOnly: true }),
    });
    const { id } = (await created.json()) as { id: string };
    expect(created.status).toBe(201);
    expect((await h.router.store.get(id))?.nodeId).toBe(h.nodeId);

    const events = await h.router.app.request(`/v1/previews/${id}/events`, { headers: bearer(h.alice.jwt) });
    expect(events.status).toBe(200);
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    let sse = '';

    const report = (headers: Record<string, string>, body: object = {}) =>
      h.router.app.request(`/v1/nodes/previews/${id}/failed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ reason: 'OOMKilled: the container ran out of memory (512 MiB)', ...body }),
      });
    // Only the node the preview is on: a user is refused, a bad body names its field.
    expect((await report(bearer(h.alice.jwt))).status).toBe(403);
    const bad = await report(bearer(h.nodeCredential), { reason: '' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain('body.reason');

    const res = await report(bearer(h.nodeCredential), { oomKilled: true });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id, state: 'failed' });

    const got = (await (
      await h.router.app.request(`/v1/previews/${id}`, { headers: bearer(h.alice.jwt) })
    ).json()) as { state: string; error: string | null };
    expect(got.state).toBe('failed');
    expect(got.error).toContain('OOMKilled');

    while (!/"state":"failed"[^\n]*OOMKilled/.test(sse)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`SSE ended before the failed state: ${sse}`);
      sse += decoder.decode(value, { stream: true });
    }
    await reader.cancel();
    // Repeat-safe.
    expect((await report(bearer(h.nodeCredential))).status).toBe(200);
  });
});

describe('a node reports a preview whose sandbox was taken away (killed, not OOM)', () => {
  it('the preview is re-placed from its stored files, at most 3 times in 10 minutes, then fails', async () => {
    const tier = h.router.tiers.docker as ReturnType<typeof createLocalServerTier>;
    const created = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: { ...VITE_FILES, 'notes.txt': 'kept' }, serverOnly: true }),
    });
    const { id } = (await created.json()) as { id: string };
    await h.router.previews.waitReady(id, 20_000);
    const report = () =>
      h.router.app.request(`/v1/nodes/previews/${id}/failed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(h.nodeCredential) },
        body: JSON.stringify({ reason: 'exited with code 137', oomKilled: false }),
      });
    for (let i = 0; i < 3; i++) {
      const creates = tier.creates;
      const res = await report();
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ id, state: 'migrating' });
      const back = await h.router.previews.waitReady(id, 20_000);
      expect(back.state).toBe('ready');
      expect(back.error).toBeNull();
      expect(tier.creates).toBe(creates + 1);
      expect(tier.files(id)?.get('notes.txt')).toBe('kept');
    }
    // A sandbox that keeps dying: the fourth loss within the window fails the preview.
    const last = await report();
    expect(await last.json()).toMatchObject({ id, state: 'failed' });
    expect((await h.router.store.get(id))?.error).toContain('exited with code 137');
  });
});
