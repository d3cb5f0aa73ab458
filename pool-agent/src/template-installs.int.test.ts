import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TierUnavailableError } from '@preview/tiers';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installStamp, npmErrorMessage, npmSummary, TemplateInstalls } from './template-installs.ts';

const log = pino({ level: 'silent' });

describe('template installs (host-process runtime)', () => {
  let dir: string;
  let registry: http.Server;
  let registryUrl: string;
  const requested: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'template-installs-'));
    // A registry on loopback that has nothing: every tarball is a 404.
    registry = http.createServer((req, res) => {
      requested.push(req.url ?? '');
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Not found"}');
    });
    await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
    registryUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}/`;
    // A template whose one dependency exists nowhere (the lockfile points at the registry above).
    const src = join(dir, 'src', 'vite-react');
    await mkdir(src, { recursive: true });
    const name = `no-such-package-${Date.now()}`;
    await writeFile(
      join(src, 'package.json'),
      JSON.stringify({ name: 'broken', version: '0.0.0', dependencies: { [name]: '1.0.0' } }),
    );
    await writeFile(
      join(src, 'package-lock.json'),
      JSON.stringify({
        name: 'broken',
        version: '0.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: {
          '': { name: 'broken', version: '0.0.0', dependencies: { [name]: '1.0.0' } },
          [`node_modules/${name}`]: {
            version: '1.0.0',
            resolved: `${registryUrl}${name}/-/${name}-1.0.0.tgz`,
            integrity: `sha512-${Buffer.alloc(64).toString('base64')}`,
          },
        },
      }),
    );
    await writeFile(join(src, '.npmrc'), `registry=${registryUrl}\nfetch-retries=0\n`);
  });

  afterAll(async () => {
    await new Promise((r) => registry?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('before and during the install a claim is told why it cannot run, naming the template', () => {
    const installs = new TemplateInstalls({
      sourceDir: join(dir, 'src'),
      targetDir: join(dir, 'installed'),
      templates: ['vite-react'],
      node: 'n1',
      log,
    });
    expect(() => installs.check('vite-react')).toThrow(TierUnavailableError);
    expect(() => installs.check('vite-react')).toThrow(
      /installing templates on node n1: 0 of 1 done; vite-react is not installed yet/,
    );
    expect(() => installs.check('next')).toThrow(
      /template next is not installed on node n1 .*PROCESS_TEMPLATES/,
    );
  });

  it('a template without sources is a ConfigError naming it', () => {
    expect(
      () =>
        new TemplateInstalls({
          sourceDir: join(dir, 'src'),
          targetDir: join(dir, 'installed'),
          templates: ['vite-vue'],
          node: 'n1',
          log,
        }),
    ).toThrow(/PROCESS_TEMPLATES: template "vite-vue" has no .*vite-vue\/package.json/);
  });

  it("a failed npm ci is the template's error: the template, npm's message and what to run", {
    timeout: 120_000,
  }, async () => {
    const installs = new TemplateInstalls({
      sourceDir: join(dir, 'src'),
      targetDir: join(dir, 'installed'),
      templates: ['vite-react'],
      node: 'n1',
      log,
    });
    const installed: string[] = [];
    installs.onInstalled((t) => installed.push(t));
    await installs.start();
    const s = installs.state('vite-react');
    expect(s?.kind).toBe('failed');
    const message = s?.kind === 'failed' ? s.message : '';
    expect(message).toMatch(/^template vite-react: npm ci failed \(exit \d+\): npm error .*404/);
    expect(message).toContain(`cd ${join(dir, 'installed', 'vite-react')} && npm ci`);
    expect(message).toContain('NODE_EXTRA_CA_CERTS');
    expect(requested.length).toBeGreaterThan(0);
    expect(installed).toEqual([]);
    expect(() => installs.check('vite-react')).toThrow(message);
    try {
      installs.check('vite-react');
    } catch (e) {
      expect((e as TierUnavailableError).code).toBe('template_install_failed');
    }
  });
});

describe("npm's output, summarized", () => {
  it('the summary is the last line; the error keeps npm error lines without the log pointer', () => {
    expect(npmSummary('\nadded 14 packages in 2s\n\n')).toBe('added 14 packages in 2s');
    expect(
      npmErrorMessage(
        'npm error code E404\nnpm error 404 Not Found - GET http://x/y\nnpm error A complete log of this run can be found in: /root/.npm/_logs/1.log\n',
      ),
    ).toBe('npm error code E404 | npm error 404 Not Found - GET http://x/y');
    expect(npmErrorMessage('')).toBe('(npm printed nothing)');
  });

  it('the stamp changes with the package.json and the lockfile', () => {
    const a = installStamp('{"a":1}', '{}');
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(installStamp('{"a":1}', '{}')).toBe(a);
    expect(installStamp('{"a":2}', '{}')).not.toBe(a);
    expect(installStamp('{"a":1}', '{"l":1}')).not.toBe(a);
  });
});
