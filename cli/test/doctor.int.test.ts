import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_PG_ADMIN_URL, TEST_PREVIEW_IMAGE, TEST_REDIS_URL } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

/** `preview doctor` as a process on this machine (Docker, Postgres and Redis run in the test env). */
describe('preview doctor', () => {
  let dir: string;
  let busy: Server;
  let busyPort: number;
  let freePort: number;

  const listen = async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return { s, port: (s.address() as { port: number }).port };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'preview-doctor-'));
    ({ s: busy, port: busyPort } = await listen());
    const free = await listen();
    freePort = free.port;
    await new Promise((r) => free.s.close(r));
  });
  afterAll(async () => {
    await new Promise((r) => busy?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('on a machine without Docker it says what is missing and how to install it, and exits 1', async () => {
    const r = await runCli(['doctor'], {
      DOCKER_HOST: `unix://${join(dir, 'no-docker.sock')}`,
      // Nor bubblewrap: nothing on PATH.
      PATH: dir,
      PORT: String(freePort),
    });
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('\x1b[');
    expect(r.stdout).toMatch(
      /^FAIL {2}docker {6}no Docker engine: unix:\/\/.*no-docker\.sock does not exist$/m,
    );
    expect(r.stdout).toContain('→ install Docker: `sudo apt-get install docker.io`');
    expect(r.stdout).toContain('→ start it: `sudo systemctl start docker`');
    expect(r.stdout).toMatch(/^skip {2}image .*needs the Docker engine/m);
    expect(r.stdout).toMatch(/^warn {2}bubblewrap {2}bwrap not found on PATH/m);
    expect(r.stdout).toContain('→ install it: `sudo apt-get install bubblewrap`');
    expect(r.stdout).toMatch(/^ok {4}port {8}127\.0\.0\.1:\d+ is free$/m);
    expect(r.stdout).toContain('required check(s) failed');

    const json = await runCli(['doctor', '--json'], { DOCKER_HOST: `unix://${join(dir, 'no-docker.sock')}` });
    expect(json.code).toBe(1);
    const doc = JSON.parse(json.stdout) as {
      ok: boolean;
      checks: Array<{ name: string; status: string; advice?: string[] }>;
    };
    expect(doc.ok).toBe(false);
    expect(doc.checks.find((c) => c.name === 'docker')).toMatchObject({
      status: 'fail',
      advice: expect.arrayContaining([expect.stringContaining('apt-get install docker.io')]),
    });
  });

  it('with everything present (Docker, the image, bubblewrap, Postgres, Redis, a free port) it passes', async () => {
    const r = await runCli(['doctor'], {
      DATABASE_URL: TEST_PG_ADMIN_URL,
      REDIS_URL: TEST_REDIS_URL,
      PREVIEW_IMAGE: TEST_PREVIEW_IMAGE,
      PORT: String(freePort),
    });
    expect(r.stdout).not.toMatch(/^(FAIL|warn)/m);
    expect(r.code).toBe(0);
    for (const name of [
      'config',
      'docker',
      'image',
      'bubblewrap',
      'inotify',
      'postgres',
      'redis',
      'port',
      'clock',
    ])
      expect(r.stdout).toMatch(new RegExp(`^ok {2,}${name} `, 'm'));
    expect(r.stdout).toMatch(/^ok {4}clock .* ms against Postgres, .* ms against the Docker engine$/m);
    expect(r.stdout).toContain('everything required is present');
  });

  it('names a port in use, a Postgres and a Redis that do not answer, a missing image and a bad variable', async () => {
    const r = await runCli(['doctor', '--json'], {
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      REDIS_URL: 'redis://127.0.0.1:1',
      PREVIEW_IMAGE: 'preview-base:no-such-tag',
      PORT: String(busyPort),
    });
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as {
      checks: Array<{ name: string; status: string; detail: string; advice?: string[] }>;
    };
    const check = (name: string) => doc.checks.find((c) => c.name === name)!;
    expect(check('port')).toMatchObject({
      status: 'fail',
      detail: `127.0.0.1:${busyPort} is in use (another router?)`,
    });
    expect(check('postgres').detail).toMatch(
      /^Postgres at postgres:\/\/nobody@127\.0\.0\.1:1\/none \(DATABASE_URL\) does not answer/,
    );
    expect(check('postgres').advice?.[0]).toContain('sudo apt-get install postgresql');
    expect(check('redis').advice?.[0]).toContain('sudo apt-get install redis-server');
    expect(check('image')).toMatchObject({ status: 'fail' });
    expect(check('image').advice?.[0]).toContain('docker/preview-base/build.sh preview-base:no-such-tag');

    const bad = await runCli(['doctor'], { PORT: 'eighty' });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL {2}config .*PORT/m);
  });
});
