/**
 * Issue 10, example 0: without Docker, `npm ci && npm start` ran nothing. The host-process runtime
 * looked for each template's dependencies in `templates/<name>/node_modules`, which nothing installs,
 * so every warm sandbox failed (`package vite is not installed for /tmp/preview-…/project`) and a
 * create hung for 60 s. Here the router and its embedded agent run as `npm start` wires them, with the
 * process runtime forced and a fresh data dir: the agent installs the template (progress in the log),
 * a create during the install is refused at once saying so, the preview of that template then serves
 * its page, and a second start reuses the install (stamp).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { serve } from '@hono/node-server';
import type { Agent } from '@preview/pool-agent';
import { launchChromium } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { loadConfig } from './config.ts';
import { startEmbeddedAgent, TEMPLATE_SOURCES } from './embedded-agent.ts';

const TEMPLATE = 'vite-vanilla';

function get(port: number, host: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        })
        .on('error', reject);
    },
  );
}

/** A pino logger whose lines (their `msg`) are kept in `lines`. */
function capturedLog() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) {
        try {
          lines.push(String((JSON.parse(l) as { msg?: unknown }).msg));
        } catch {
          lines.push(l);
        }
      }
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

describe('npm start without Docker: the embedded agent installs the templates it runs', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  let dataDir: string;
  const agents: Agent[] = [];
  // The host's NODE_EXTRA_CA_CERTS, as main.ts reads it (this network intercepts TLS).
  const npmCaCerts = loadConfig(process.env).NODE_EXTRA_CA_CERTS;

  const start = async (log: pino.Logger) => {
    const agent = await startEmbeddedAgent({
      nodeName: `embedded-proc-${randomBytes(4).toString('hex')}`,
      routerUrl: `http://127.0.0.1:${port}`,
      joinToken: h.joinToken,
      image: 'preview-base:unused-with-the-process-runtime',
      runtime: 'process',
      dataDir,
      logLevel: 'info',
      ...(npmCaCerts ? { npmCaCerts } : {}),
      // One template, so the install takes one npm ci.
      settings: { WARM_POOL: `${TEMPLATE}=1`, PROCESS_TEMPLATES: TEMPLATE, NODE_SLOTS: '3' },
      log,
    });
    agents.push(agent);
    return agent;
  };

  async function create(files: Record<string, string>) {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files, serverOnly: true }),
    });
    const body = (await res.json()) as {
      id: string;
      state: string;
      tier: string | null;
      previewUrl: string | null;
      error: string | null;
      reasons: { tier: string; outcome: string; reason: string }[];
    };
    expect(res.status, JSON.stringify(body)).toBe(201);
    return body;
  }

  const project = (marker: string): Record<string, string> => ({
    'package.json': readFileSync(join(TEMPLATE_SOURCES, TEMPLATE, 'package.json'), 'utf8'),
    'index.html': `<!doctype html><html><body><h1>${marker}</h1><script type="module" src="/src/main.js"></script></body></html>`,
    'src/main.js': `document.body.dataset.ok = '1';\n`,
  });

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'router-process-'));
    h = await createHarness({
      tiers: ({ nodeDirectory }) => ({
        browser: createBrowserTier(),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    // The harness's placeholder node has no agent behind it: only the embedded agent is placed on.
    await h.router.nodes.liveness.forget(h.nodeId);
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const a of agents) await a.close({ removeSandboxes: true }).catch(() => {});
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /**
   * The editor page (`/`) in Chromium: picks the template, asks for a server tier, clicks New project
   * and returns the status bar once `until` matches it (and the preview frame shows `frameText`).
   */
  async function editorCreate(until: RegExp, frameText?: string) {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${port}/#token=${h.alice.jwt}`);
      await page.waitForSelector(`#template option[value="${TEMPLATE}"]`, { state: 'attached' });
      await page.selectOption('#template', TEMPLATE);
      await page.check('#server-only');
      await page.click('#create');
      await page
        .waitForFunction(
          (re) => new RegExp(re).test(document.getElementById('status')!.textContent ?? ''),
          until.source,
          {
            timeout: 120_000,
          },
        )
        .catch(() => {});
      if (frameText)
        await page
          .frameLocator('#preview iframe')
          .locator('h1')
          .filter({ hasText: frameText })
          .waitFor({ timeout: 120_000 });
      return (await page.textContent('#status')) ?? '';
    } finally {
      await chrome.close();
    }
  }

  it("the editor page's New project shows a failed create's state, error and placement reasons (no agent yet)", {
    timeout: 180_000,
  }, async () => {
    const status = await editorCreate(/state: failed[\s\S]*placement:/);
    expect(status).toContain('state: failed');
    expect(status).toContain('error: no tier could run this preview');
    expect(status).toContain('browser: skipped — server tier requested');
    expect(status).toContain('docker: skipped — docker tier has no live node');
  });

  it('first start installs the template (logged); a create meanwhile says so; then a preview serves its page', {
    timeout: 600_000,
  }, async () => {
    const { log, lines } = capturedLog();
    const agent = await start(log);
    expect(agent.runtime.kind).toBe('process');
    expect(agent.templates?.templates).toEqual([TEMPLATE]);

    // Registered before the install ends: a create now is refused at once, with the reason.
    expect(agent.templates?.state(TEMPLATE)?.kind).not.toBe('installed');
    const early = await create(project('too early'));
    expect(early.state).toBe('failed');
    expect(early.reasons.find((r) => r.tier === 'docker')?.reason).toMatch(
      /installing templates on node .*vite-vanilla is not installed yet/,
    );

    await agent.templates!.done();
    const state = agent.templates!.state(TEMPLATE);
    expect(state, lines.join('\n')).toEqual({ kind: 'installed', reused: false });
    const installed = join(dataDir, 'templates', TEMPLATE);
    expect(existsSync(join(installed, 'node_modules/vite/package.json'))).toBe(true);
    expect(existsSync(join(installed, 'node_modules/.preview-stamp'))).toBe(true);
    // Sources mirrored beside it.
    expect(readFileSync(join(installed, 'src/main.js'), 'utf8')).toBe(
      readFileSync(join(TEMPLATE_SOURCES, TEMPLATE, 'src/main.js'), 'utf8'),
    );
    // Progress: one line when it starts, one with npm's summary when it is done.
    expect(lines).toContain(`template ${TEMPLATE}: installing dependencies (npm ci)`);
    expect(lines.some((l) => new RegExp(`^template ${TEMPLATE}: added \\d+ packages`).test(l))).toBe(true);

    // The warm pool fills once the template is there.
    await agent.pools.settled();
    expect(agent.pools.counts()[TEMPLATE], lines.join('\n')).toBe(1);

    const marker = `installed-${randomBytes(3).toString('hex')}`;
    const p = await create(project(marker));
    expect(p.tier, JSON.stringify(p)).toBe('docker');
    const host = `${p.id}.preview.localhost:${port}`;
    const link = await get(port, host, `/?token=${new URL(p.previewUrl!).searchParams.get('token')}`);
    expect(link.status).toBe(302);
    const cookie = link.headers['set-cookie']![0]!.split(';')[0]!;
    const until = Date.now() + 120_000;
    let page = await get(port, host, '/', { cookie });
    while (!page.body.includes(marker) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      page = await get(port, host, '/', { cookie });
    }
    expect(page.status, page.body.slice(0, 500)).toBe(200);
    expect(page.body).toContain(marker);
    await agent.close({ removeSandboxes: true });
  });

  it('a second start on the same data dir does not reinstall (stamp)', { timeout: 300_000 }, async () => {
    const installed = join(dataDir, 'templates', TEMPLATE);
    // A file npm would remove with node_modules: still there after the restart.
    const keep = join(installed, 'node_modules', '.kept-across-starts');
    writeFileSync(keep, 'x');
    const viteMtime = statSync(join(installed, 'node_modules/vite/package.json')).mtimeMs;
    const { log, lines } = capturedLog();
    const agent = await start(log);
    await agent.templates!.done();
    expect(agent.templates!.state(TEMPLATE)).toEqual({ kind: 'installed', reused: true });
    expect(lines).toContain(`template ${TEMPLATE}: dependencies already installed`);
    expect(lines).not.toContain(`template ${TEMPLATE}: installing dependencies (npm ci)`);
    expect(existsSync(keep)).toBe(true);
    expect(statSync(join(installed, 'node_modules/vite/package.json')).mtimeMs).toBe(viteMtime);
    await agent.pools.settled();
    expect(agent.pools.counts()[TEMPLATE]).toBe(1);
  });

  it("the editor page's New project shows the state as it comes over SSE and the preview in its frame", {
    timeout: 300_000,
  }, async () => {
    const status = await editorCreate(/state: ready on docker/, 'Vite vanilla preview');
    expect(status).toContain('state: ready on docker');
    expect(status).toContain('docker: chosen');
  });
});
