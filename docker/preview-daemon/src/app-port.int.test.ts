import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDaemon,
  type HostDaemon,
  health,
  SyncClient,
  spawnDaemon,
  tempProjectDir,
  until,
} from '../test/helpers.ts';

/** A Node server project with no dependencies (plain node:http), so nothing is installed. */
function project(server: string): string {
  const dir = tempProjectDir();
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'app', type: 'module', main: 'server.js' }),
  );
  writeFileSync(join(dir, 'server.js'), server);
  return dir;
}

const listen = (args: string) => `import { createServer } from 'node:http';
const server = createServer((req, res) => res.end('hello from ' + server.address().port));
server.listen(${args}, () => console.log('app listening'));
`;

let d: HostDaemon | undefined;
let sync: SyncClient | undefined;
beforeAll(() => {
  buildDaemon();
});
afterEach(async () => {
  sync?.close();
  await d?.stop();
  d = undefined;
});

async function start(server: string, env: Record<string, string> = {}): Promise<HostDaemon> {
  d = await spawnDaemon({ template: 'express-pg', projectDir: project(server), env });
  sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync?token=${d.token}`);
  return d;
}

describe("the app's own port", () => {
  it('an app that ignores PORT and binds only 127.0.0.1:8080 is found and proxied', {
    timeout: 120_000,
  }, async () => {
    const daemon = await start(listen("8080, '127.0.0.1'"));
    await until(async () => (await health(daemon.port)).status === 200, 60_000, 'ready');
    expect(await (await fetch(`http://127.0.0.1:${daemon.port}/`)).text()).toBe('hello from 8080');
    const status = await (
      await fetch(`http://127.0.0.1:${daemon.port}/__preview/status`, {
        headers: { authorization: `Bearer ${daemon.token}` },
      })
    ).json();
    expect(status.log.join('\n')).toMatch(/listens on port 8080 \(it was given PORT=\d+\)/);
  });

  it('an app on a common port (3000, the old daemon port) runs, and an edit restarts it there', {
    timeout: 120_000,
  }, async () => {
    const daemon = await start(listen('3000'));
    await until(async () => (await health(daemon.port)).status === 200, 60_000, 'ready');
    expect(await (await fetch(`http://127.0.0.1:${daemon.port}/`)).text()).toBe('hello from 3000');
    // Two processes cannot share port 3000: the old one stops before the new one starts.
    const edited = listen('3000').replace("'hello from '", "'edited on '");
    expect((await sync!.batch(1, [{ op: 'put', path: 'server.js', content: edited }])).type).toBe('ack');
    await until(
      async () =>
        (await fetch(`http://127.0.0.1:${daemon.port}/`).then(
          (r) => r.text(),
          () => '',
        )) === 'edited on 3000',
      60_000,
      'the edited app',
    );
    expect((await health(daemon.port)).status).toBe(200);
  });

  it('an app that opens no port: error in seconds naming the port expected, with its last lines', {
    timeout: 120_000,
  }, async () => {
    const daemon = await start("console.log('doing nothing useful');\nsetInterval(() => {}, 1000);\n", {
      PREVIEW_APP_READY_TIMEOUT_MS: '3000',
    });
    const error = await sync!.next((f) => f.type === 'status' && f['phase'] === 'error', 60_000, 'error');
    expect(String(error['message'])).toMatch(
      /opened no port within 3 s \(it was given PORT=\d+ and listens on none\)/,
    );
    expect(String(error['message'])).toContain('doing nothing useful');
    expect((await health(daemon.port)).status).toBe(503);
    // A page the browser navigates to meanwhile says why and asks again by itself.
    const nav = await fetch(`http://127.0.0.1:${daemon.port}/`, {
      headers: { 'sec-fetch-dest': 'document' },
    });
    expect(nav.status).toBe(503);
    expect(nav.headers.get('content-type')).toMatch(/text\/html/);
    const html = await nav.text();
    expect(html).toContain('<meta http-equiv="refresh" content="1">');
    expect(html).toMatch(/opened no port within 3 s/);
    // Anything else gets the plain answer.
    const plain = await fetch(`http://127.0.0.1:${daemon.port}/api`);
    expect(plain.headers.get('content-type')).toMatch(/text\/plain/);
    await plain.body?.cancel();
  });
});

describe('an app that stops by itself', () => {
  it('is reported with its exit code and last lines, then restarted with backoff until it stays up', {
    timeout: 120_000,
  }, async () => {
    // Exits with code 3 on its first request; the restarted process does the same.
    const daemon = await start(`import { createServer } from 'node:http';
createServer((req, res) => {
  res.end('up');
  if (req.url === '/crash') { console.error('crashing on purpose'); setTimeout(() => process.exit(3), 10); }
}).listen(Number(process.env.PORT));
`);
    await until(async () => (await health(daemon.port)).status === 200, 60_000, 'ready');
    const from = sync!.frames.length;
    await fetch(`http://127.0.0.1:${daemon.port}/crash`);
    const error = await sync!.next(
      (f) => f.type === 'status' && f['phase'] === 'error',
      30_000,
      'error',
      from,
    );
    expect(String(error['message'])).toContain('the app exited with code 3');
    expect(String(error['message'])).toContain('crashing on purpose');
    expect(String(error['message'])).toMatch(/restarting it in [\d.]+ s \(attempt 1\)/);
    const restarting = await sync!.next(
      (f) => f.type === 'status' && f['phase'] === 'starting',
      30_000,
      'starting',
      sync!.frames.indexOf(error),
    );
    expect(String(restarting['message'])).toContain('restarting the app after it stopped');
    await sync!.next(
      (f) => f.type === 'status' && f['phase'] === 'ready',
      30_000,
      'ready again',
      sync!.frames.indexOf(restarting),
    );
    expect(await (await fetch(`http://127.0.0.1:${daemon.port}/`)).text()).toBe('up');

    // A second crash waits longer (the backoff doubles).
    const from2 = sync!.frames.length;
    await fetch(`http://127.0.0.1:${daemon.port}/crash`);
    const again = await sync!.next(
      (f) => f.type === 'status' && f['phase'] === 'error',
      30_000,
      'error 2',
      from2,
    );
    expect(String(again['message'])).toMatch(/\(attempt 2\)/);
  });
});
