import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  appArgs,
  exitText,
  freePort,
  hostPort,
  mainOf,
  spawnApp,
  terminate,
  waitListening,
} from './app-process.ts';
import { LogRing } from './log.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function project(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'app-process-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

describe('the app command', () => {
  it('runs package.json main, else server.js', async () => {
    expect(mainOf(await project({ 'package.json': '{"main":"api/index.js"}' }))).toBe('api/index.js');
    expect(appArgs('node', await project({ 'package.json': '{"main":""}' }), 3000)).toEqual(['server.js']);
    expect(mainOf(await project({ 'package.json': 'not json' }))).toBe('server.js');
  });
});

describe('helpers', () => {
  it('brackets IPv6 hosts', () => {
    expect(hostPort({ host: '127.0.0.1', port: 80 })).toBe('127.0.0.1:80');
    expect(hostPort({ host: '::1', port: 80 })).toBe('[::1]:80');
  });

  it('says how the app ended, with its last lines', () => {
    const log = new LogRing();
    expect(exitText(log, 1, null, 'exited')).toBe('the app exited with code 1');
    log.push('boom\nat x');
    expect(exitText(log, null, 'SIGKILL', 'exited')).toBe(
      'the app exited with signal SIGKILL; last lines:\nboom\nat x',
    );
  });
});

describe('a real app process', () => {
  it('is found listening on its PORT, logs its output, and is terminated', async () => {
    const dir = await project({
      'server.js':
        "require('node:http').createServer((q, s) => s.end('hi')).listen(Number(process.env.PORT), () => console.log('up'));",
    });
    const log = new LogRing();
    const port = await freePort();
    const c = spawnApp(
      'node',
      { projectDir: dir, cacheDir: dir, env: { PATH: process.env.PATH ?? '' } },
      port,
      (b) => log.push(b.toString('utf8')),
    );
    try {
      expect(await waitListening(c, port, { readyTimeoutMs: 20_000, log })).toEqual({
        host: '127.0.0.1',
        port,
      });
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('hi');
    } finally {
      await terminate(c);
    }
    expect(c.signalCode).toBe('SIGTERM');
    expect(log.tail()).toContain('up');
  });

  it("an app that crashes at start: the report quotes Node's error, not only the last frames of its trace", async () => {
    // CommonJS code in a project whose package.json makes .js files ES modules.
    const dir = await project({
      'package.json': '{"type":"module"}',
      'server.js': "const http = require('node:http');\nhttp.createServer().listen(process.env.PORT);\n",
    });
    const log = new LogRing();
    const c = spawnApp(
      'node',
      { projectDir: dir, cacheDir: dir, env: { PATH: process.env.PATH ?? '' } },
      await freePort(),
      (b) => log.push(b.toString('utf8')),
    );
    expect(await waitListening(c, 1, { readyTimeoutMs: 20_000, log })).toBeUndefined();
    await terminate(c);
    const text = exitText(log, c.exitCode, c.signalCode, 'exited');
    expect(text).toMatch(/^the app exited with code 1; last lines:\n/);
    expect(text).toContain('ReferenceError: require is not defined in ES module scope');
    expect(text).toContain('server.js:1');
  });

  it('reports an app that exits before it listens as undefined', async () => {
    const dir = await project({ 'server.js': 'process.exit(3)' });
    const c = spawnApp('node', { projectDir: dir, cacheDir: dir, env: {} }, await freePort(), () => {});
    expect(await waitListening(c, 1, { readyTimeoutMs: 20_000, log: new LogRing() })).toBeUndefined();
    await terminate(c);
  });
});
