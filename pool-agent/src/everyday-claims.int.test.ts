/**
 * Claims of apps as users bring them, on the real engine with the preview image: scaffolds from
 * create-vite's npm package (packed at test time, never committed), an app with its own
 * dependencies (the claim returns while the daemon installs them, and status says so), and an app
 * whose dev server fails (the claim fails at once with the daemon's message, which outlives the
 * sandbox).
 */
import { randomBytes } from 'node:crypto';
import { packCreateVite } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authed, startAgent, testConfig, until } from '../test/fixtures.ts';
import type { Agent } from './agent.ts';

const CA = '/etc/ssl/certs/ca-certificates.crt';
const pid = () => `ev-${randomBytes(6).toString('hex')}`;

describe('everyday claims on the real engine', () => {
  let agent: Agent;
  let stop: () => Promise<void>;
  let token: string;
  let createVite: ReturnType<typeof packCreateVite> | undefined;

  beforeAll(async () => {
    createVite = packCreateVite();
    const config = testConfig({
      WARM_POOL: 'vite-vue-ts=1,express-pg=1',
      PREVIEW_MEMORY_MIB: '1024',
      PREVIEW_NODE_EXTRA_CA_CERTS: CA,
      READY_TIMEOUT_MS: '120000',
    });
    token = config.AGENT_TOKEN!;
    ({ agent, stop } = await startAgent(config));
    await agent.pools.populate();
    await agent.pools.settled();
  }, 300_000);
  afterAll(async () => {
    await stop?.();
    createVite?.remove();
  });

  const claim = async (previewId: string, template: string, files: Record<string, string>) => {
    const res = await fetch(
      `${agent.url}/v1/previews`,
      authed(token, { method: 'POST', body: JSON.stringify({ previewId, template, files }) }),
    );
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const status = async (id: string) =>
    (await (await fetch(`${agent.url}/v1/previews/${id}/status`, authed(token))).json()) as {
      phase: string;
      message?: string;
      log?: string[];
    };

  it('a Vue-TS scaffold claims the warm vite-vue-ts sandbox and serves its page', async () => {
    const id = pid();
    const files = createVite!.template('vue-ts', { textOnly: true }) as Record<string, string>;
    const r = await claim(id, 'vite-vue-ts', files);
    expect(r.status, `${JSON.stringify(r.body)} ${JSON.stringify(await status(id))}`).toBe(201);
    expect(r.body['warm']).toBe(true);
    // The scaffold has the template's dependencies and no lockfile: linked, not installed, so the
    // claim answers for the app itself (it said `installing` while nothing installed).
    expect(r.body['phase']).toBe('ready');
    const page = await until(
      async () => {
        const res = await fetch(`${r.body['upstream']}/`, { headers: { 'x-agent-token': token } });
        return res.status === 200 ? await res.text() : undefined;
      },
      120_000,
      'the page',
    );
    expect(page).toContain('<div id="app"></div>');
    expect((await status(id)).phase).toBe('ready');
  }, 300_000);

  it('a cold claim of a Vue scaffold (no warm vite-vue sandbox) answers for its app, not "installing"', async () => {
    const id = pid();
    const files = createVite!.template('vue', { textOnly: true }) as Record<string, string>;
    const r = await claim(id, 'vite-vue', files);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body['warm']).toBe(false);
    // Its files reach the daemon while it boots: the template's packages are linked, nothing installs.
    expect(r.body['phase']).toBe('ready');
    const res = await fetch(`${r.body['upstream']}/`, { headers: { 'x-agent-token': token } });
    expect(await res.text()).toContain('<div id="app"></div>');
    expect((await status(id)).log?.join('\n')).not.toMatch(/npm (install|ci)|installing what the template/);
  }, 300_000);

  it('a claim whose package.json adds a dependency returns while the daemon installs it, then turns ready', async () => {
    const id = pid();
    const files = createVite!.template('vue-ts', { textOnly: true }) as Record<string, string>;
    const pkg = JSON.parse(files['package.json']!);
    pkg.dependencies = { ...pkg.dependencies, ms: '2.1.3' };
    files['package.json'] = JSON.stringify(pkg, null, 2);
    files['src/main.ts'] = `import ms from 'ms';\nconsole.log(ms(1000));\n${files['src/main.ts']}`;
    const r = await claim(id, 'vite-vue-ts', files);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    // The install may finish before the claim looks: either answer is honest.
    expect(['installing', 'ready']).toContain(r.body['phase']);
    await until(async () => ((await status(id)).phase === 'ready' ? true : undefined), 240_000, 'ready');
    const main = await fetch(`${r.body['upstream']}/src/main.ts`, { headers: { 'x-agent-token': token } });
    expect(await main.text()).toMatch(/deps\/ms\.js/);
  }, 300_000);

  it('an Express app on port 3000 of its own (a dual-stack wildcard socket) is found and served', async () => {
    const id = pid();
    const files = {
      'package.json': JSON.stringify({ name: 'api', type: 'module', dependencies: { express: '^5.1.0' } }),
      'server.js':
        "import express from 'express';\nconst app = express();\napp.get('/', (_q, r) => r.send('own port ok'));\napp.listen(3000, () => console.log('listening on 3000'));\n",
    };
    const r = await claim(id, 'express-pg', files);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const page = await until(
      async () => {
        const res = await fetch(`${r.body['upstream']}/`, { headers: { 'x-agent-token': token } });
        return res.status === 200 ? await res.text() : undefined;
      },
      240_000,
      `the app's page (status: ${JSON.stringify(await status(id))})`,
    );
    expect(page).toBe('own port ok');
    expect((await status(id)).log?.join('\n')).toMatch(/listens on port 3000/);
  }, 300_000);

  it('a dev server that fails is reported at once with the daemon message, kept after the sandbox is gone', async () => {
    const id = pid();
    const files = createVite!.template('vue-ts', { textOnly: true }) as Record<string, string>;
    // A config that throws: the dev server cannot start, whatever the daemon retries.
    files['vite.config.ts'] = "throw new Error('config exploded on purpose');\nexport default {};\n";
    // A warm sandbox is waiting (the refills after the claims above are done), as for most claims.
    await agent.pools.populate();
    await agent.pools.settled();
    const r = await claim(id, 'vite-vue-ts', files);
    expect(r.status, JSON.stringify(r.body)).toBeGreaterThanOrEqual(400);
    // The daemon's error ends the wait (not "preview not ready after ... ms").
    expect(JSON.stringify(r.body)).toMatch(/config exploded on purpose/);
    const s = await status(id);
    expect(s.phase).toBe('error');
    expect(s.message).toMatch(/config exploded on purpose/);
  }, 300_000);
});
