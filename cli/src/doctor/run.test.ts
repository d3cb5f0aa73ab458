import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import type { Output } from '../output.ts';
import { type Check, dockerTarget, doctorContext, which } from './checks.ts';
import { printDoctorReport, runDoctor } from './run.ts';

const capture = (o: Partial<Output> = {}) => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => {
    text += d.toString();
  });
  return { o: { out, err: out, json: false, tty: false, ...o } as Output, text: () => text };
};

const check = (name: string, required: boolean, run: Check['run']): Check => ({ name, required, run });

describe('runDoctor with injected checks', () => {
  const ctx = doctorContext({ PORT: '0' });

  it('fails only when a required check fails; warnings, skips and optional failures pass', async () => {
    const pass = await runDoctor(ctx, [
      check('a', true, async () => ({ status: 'ok', detail: 'fine' })),
      check('b', true, async () => ({ status: 'warn', detail: 'meh', advice: ['do x'] })),
      check('c', true, async () => ({ status: 'skip', detail: 'not set' })),
      check('d', false, async () => ({ status: 'fail', detail: 'optional thing missing' })),
    ]);
    expect(pass.ok).toBe(true);
    const fail = await runDoctor(ctx, [check('e', true, async () => ({ status: 'fail', detail: 'gone' }))]);
    expect(fail.ok).toBe(false);
  });

  it('a check that throws is a failure with its message', async () => {
    const r = await runDoctor(ctx, [
      check('boom', true, async () => {
        throw new Error('probe exploded');
      }),
    ]);
    expect(r).toEqual({
      ok: false,
      checks: [{ name: 'boom', required: true, status: 'fail', detail: 'the check failed: probe exploded' }],
    });
  });

  it('prints a line per check, its advice under it and a summary; plain text off a terminal', async () => {
    const report = await runDoctor(ctx, [
      check('docker', true, async () => ({
        status: 'fail',
        detail: 'no engine',
        advice: ['install Docker: `sudo apt-get install docker.io`'],
      })),
      check('redis', true, async () => ({ status: 'skip', detail: 'REDIS_URL unset' })),
    ]);
    const plain = capture();
    printDoctorReport(plain.o, report);
    expect(plain.text()).toBe(
      [
        'FAIL  docker  no engine',
        '              → install Docker: `sudo apt-get install docker.io`',
        'skip  redis   REDIS_URL unset',
        '',
        '1 required check(s) failed: do what the arrows say, then run `preview doctor` again',
        '',
      ].join('\n'),
    );
    const tty = capture({ tty: true });
    printDoctorReport(tty.o, report);
    expect(tty.text()).toContain('\x1b[');
    const json = capture({ json: true });
    printDoctorReport(json.o, report);
    expect(JSON.parse(json.text())).toEqual(report);
  });

  it('a configuration that does not parse fails the config check, naming the variable', async () => {
    const r = await runDoctor(doctorContext({ PORT: '70000' }));
    expect(r.checks[0]).toMatchObject({
      name: 'config',
      status: 'fail',
      detail: expect.stringContaining('PORT'),
    });
    expect(r.ok).toBe(false);
  });
});

describe('doctor helpers', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('dockerTarget: DOCKER_HOST (unix or tcp), else DOCKER_SOCKET, else /var/run/docker.sock', () => {
    expect(dockerTarget({ DOCKER_HOST: 'unix:///run/user/1000/docker.sock' })).toEqual({
      where: 'unix:///run/user/1000/docker.sock',
      options: { socketPath: '/run/user/1000/docker.sock' },
    });
    expect(dockerTarget({ DOCKER_HOST: 'tcp://10.0.0.5:2376' }).options).toEqual({
      host: '10.0.0.5',
      port: 2376,
      protocol: 'http',
    });
    expect(dockerTarget({ DOCKER_SOCKET: '/tmp/d.sock' }).options).toEqual({ socketPath: '/tmp/d.sock' });
    expect(dockerTarget({}).options).toEqual({ socketPath: '/var/run/docker.sock' });
  });

  it('which finds an executable on PATH and ignores files that are not executable', async () => {
    const a = await mkdtemp(join(tmpdir(), 'which-a-'));
    const b = await mkdtemp(join(tmpdir(), 'which-b-'));
    dirs.push(a, b);
    await writeFile(join(a, 'bwrap'), 'not executable');
    await writeFile(join(b, 'bwrap'), '#!/bin/sh\n');
    await chmod(join(b, 'bwrap'), 0o755);
    expect(await which('bwrap', `${a}:${b}`)).toBe(join(b, 'bwrap'));
    expect(await which('bwrap', a)).toBeUndefined();
    expect(await which('bwrap', undefined)).toBeUndefined();
  });
});
