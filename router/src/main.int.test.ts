import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testDocker } from '@preview/testkit';
import { afterAll, expect, it } from 'vitest';
import { embeddedNodeName } from './embedded-agent.ts';

const repo = join(import.meta.dirname, '..', '..');
let child: ChildProcess | undefined;
let dataDir: string | undefined;

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  if (dataDir) {
    // Only after a failed test: whatever it left.
    const docker = testDocker();
    const left = await docker
      .listContainers({ all: true, filters: { label: [`preview.node=${embeddedNodeName(dataDir)}`] } })
      .catch(() => []);
    for (const c of left)
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  }
});

it('npm start on embedded defaults serves /readyz 200 backed by embedded Postgres', async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'router-embedded-'));
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'warn' };
  delete env['DATABASE_URL'];
  delete env['REDIS_URL'];
  child = spawn(process.execPath, ['--import', 'tsx', 'router/src/main.ts'], {
    cwd: repo,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /ready at (http:\/\/\S+)/.exec(output);
      if (m) resolve(m[1]!);
    };
    child!.stdout!.on('data', onData);
    child!.stderr!.on('data', onData);
    child!.once('exit', (code) => reject(new Error(`router exited ${code}: ${output}`)));
  });
  const res = await fetch(`${url}/readyz`);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ ok: true, postgres: 'up' });

  // Stopped while its embedded agent is still filling the warm pool: nothing is left running.
  const docker = testDocker();
  const mine = () =>
    docker.listContainers({
      all: true,
      filters: { label: [`preview.node=${embeddedNodeName(dataDir!)}`] },
    });
  for (let i = 0; i < 600 && (await mine()).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  expect((await mine()).length).toBeGreaterThan(0);
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(await mine()).toEqual([]);
}, 180_000);
