import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium } from '@preview/testkit';
import { LIMITS } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  buildDaemon,
  type HostDaemon,
  health,
  SyncClient,
  spawnDaemon,
  TEMPLATES_DIR,
  tempProjectDir,
  until,
} from '../test/helpers.ts';

const APP = readFileSync(join(TEMPLATES_DIR, 'vite-react/src/App.jsx'), 'utf8');

beforeAll(() => {
  buildDaemon();
});

describe('vite-react daemon as a host process', () => {
  let d: HostDaemon;
  let sync: SyncClient;
  let outside: string;
  const url = () => `ws://127.0.0.1:${d.port}/__preview/sync`;

  beforeAll(async () => {
    d = await spawnDaemon({ template: 'vite-react', env: { PREVIEW_MAX_FILES: '60' } });
    outside = mkdtempSync(join(tmpdir(), 'daemon-outside-'));
    sync = await SyncClient.connect(url(), { authorization: `Bearer ${d.token}` });
    await until(async () => (await health(d.port)).status === 200, 60_000, 'ready');
  });
  afterAll(async () => {
    sync?.close();
    await d?.stop();
    rmSync(outside, { recursive: true, force: true });
  });

  it('refuses the sync socket and control routes without the token', async () => {
    await expect(SyncClient.connect(url())).rejects.toThrow(/401/);
    await expect(SyncClient.connect(`${url()}?token=wrong`)).rejects.toThrow(/401/);
    expect((await fetch(`http://127.0.0.1:${d.port}/__preview/status`)).status).toBe(401);
    const ok = await fetch(`http://127.0.0.1:${d.port}/__preview/status`, {
      headers: { authorization: `Bearer ${d.token}` },
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ phase: 'ready' });
    // ?token= works for clients that cannot set headers
    (await SyncClient.connect(`${url()}?token=${d.token}`)).close();
  });

  it('rejects every bad path with the rule named and writes nothing of the batch', async () => {
    symlinkSync(outside, join(d.projectDir, 'escape'));
    const deep = Array.from({ length: LIMITS.pathDepth + 1 }, () => 'd').join('/');
    const cases: Array<[string, string, unknown]> = [
      ['absolute', 'invalid_path', { op: 'put', path: '/tmp/pwned.js', content: 'x' }],
      ['traversal', 'invalid_path', { op: 'put', path: 'src/../../pwned.js', content: 'x' }],
      ['nul', 'invalid_path', { op: 'put', path: 'src/pwned\u0000.js', content: 'x' }],
      ['backslash', 'invalid_path', { op: 'put', path: 'src\\pwned.js', content: 'x' }],
      ['symlink', 'invalid_path', { op: 'put', path: 'escape/pwned.js', content: 'x' }],
      ['symlink', 'invalid_path', { op: 'rename', from: 'index.html', to: 'escape/index.html' }],
      ['too_deep', 'invalid_path', { op: 'put', path: deep, content: 'x' }],
      ['reserved', 'invalid_path', { op: 'put', path: 'node_modules/pwned.js', content: 'x' }],
      ['file_size', 'too_large', { op: 'put', path: 'big.js', content: 'x'.repeat(LIMITS.fileBytes + 1) }],
    ];
    let seq = 1000;
    for (const [rule, code, op] of cases) {
      seq++;
      // A good op first: the whole batch must be refused, the good op included.
      const f = await sync.batch(seq, [{ op: 'put', path: `good-${seq}.js`, content: 'ok' }, op]);
      expect(f, rule).toMatchObject({ type: 'error', code, seq });
      expect(String(f['message']), rule).toContain(`rule ${rule}`);
      expect(existsSync(join(d.projectDir, `good-${seq}.js`)), rule).toBe(false);
    }
    // too many: 60 files allowed here (PREVIEW_MAX_FILES), and at most LIMITS.batchOps per batch
    const many = Array.from({ length: 61 }, (_, i) => ({ op: 'put', path: `many/f${i}.js`, content: 'x' }));
    expect(await sync.batch(++seq, many)).toMatchObject({ code: 'too_many_files' });
    expect(String(sync.frames.at(-1)!['message'])).toContain('rule too_many_files');
    const tooManyOps = Array.from({ length: LIMITS.batchOps + 1 }, (_, i) => ({
      op: 'delete',
      path: `x${i}`,
    }));
    const f = await sync.batch(++seq, tooManyOps);
    expect(f).toMatchObject({ code: 'too_many_files' });
    expect(String(f['message'])).toContain('rule batch_ops');
    expect(existsSync(join(d.projectDir, 'many'))).toBe(false);
    expect(existsSync(join(outside, 'pwned.js'))).toBe(false);
    expect(existsSync(join(outside, 'index.html'))).toBe(false);
    expect(existsSync(join(d.projectDir, 'index.html'))).toBe(true);
    rmSync(join(d.projectDir, 'escape'));
  });

  it('writes a batch atomically, acks it, and re-acks a replayed seq without rewriting', async () => {
    const f = await sync.batch(2000, [
      { op: 'put', path: 'notes/a.txt', content: 'first' },
      {
        op: 'put',
        path: 'notes/b.bin',
        content: Buffer.from([1, 2, 3]).toString('base64'),
        encoding: 'base64',
      },
    ]);
    expect(f).toEqual({ type: 'ack', seq: 2000, stage: 'applied' });
    expect(readFileSync(join(d.projectDir, 'notes/a.txt'), 'utf8')).toBe('first');
    expect([...readFileSync(join(d.projectDir, 'notes/b.bin'))]).toEqual([1, 2, 3]);
    writeFileSync(join(d.projectDir, 'notes/a.txt'), 'changed on disk');
    const again = await sync.batch(2000, [{ op: 'put', path: 'notes/a.txt', content: 'replayed' }]);
    expect(again).toEqual({ type: 'ack', seq: 2000, stage: 'applied' });
    expect(readFileSync(join(d.projectDir, 'notes/a.txt'), 'utf8')).toBe('changed on disk');
    // An older seq is not applied either.
    await sync.batch(1999, [{ op: 'put', path: 'notes/old.txt', content: 'old' }]);
    expect(existsSync(join(d.projectDir, 'notes/old.txt'))).toBe(false);
    // No temp files are left behind.
    expect(readdirSync(join(d.projectDir, '.preview-tmp'))).toEqual([]);
    // The manifest lists project files with their sha256, not node_modules or temp files.
    const m = (await (
      await fetch(`http://127.0.0.1:${d.port}/__preview/manifest`, {
        headers: { authorization: `Bearer ${d.token}` },
      })
    ).json()) as { files: Record<string, string> };
    expect(m.files['notes/b.bin']).toBe(
      createHash('sha256')
        .update(Buffer.from([1, 2, 3]))
        .digest('hex'),
    );
    expect(
      Object.keys(m.files).some((k) => k.startsWith('.preview-tmp') || k.startsWith('node_modules')),
    ).toBe(false);
    // A reconnecting client learns the last applied seq from hello.
    const again2 = await SyncClient.connect(url(), { authorization: `Bearer ${d.token}` });
    again2.send({ type: 'hello', lastAckedSeq: 0 });
    expect(await again2.next((x) => x.type === 'ack')).toMatchObject({ seq: 2000 });
    again2.close();
  });

  it('an edit reaches Vite, and an hmr event arrives for that seq', async () => {
    // Be a browser's HMR client so the update has somewhere to go, and load the module once.
    const vite = new WebSocket(`ws://127.0.0.1:${d.port}/`, 'vite-hmr');
    const viteMsgs: Array<{ type: string; updates?: Array<{ path: string }> }> = [];
    vite.on('message', (m) => viteMsgs.push(JSON.parse(String(m))));
    await new Promise((r) => vite.once('open', r));
    expect((await fetch(`http://127.0.0.1:${d.port}/src/App.jsx`)).status).toBe(200);
    const ack = await sync.batch(3000, [
      { op: 'put', path: 'src/App.jsx', content: APP.replace('Vite React preview', 'Edited once') },
    ]);
    expect(ack).toMatchObject({ type: 'ack', seq: 3000 });
    const hmr = await sync.next((f) => f.type === 'hmr' && f['seq'] === 3000, 30_000, 'hmr 3000');
    expect(hmr).toMatchObject({ kind: 'update' });
    expect(hmr['ms']).toBeGreaterThan(0);
    await until(() =>
      viteMsgs.some((m) => m.type === 'update' && m.updates?.some((u) => u.path === '/src/App.jsx')),
    );
    const served = await (await fetch(`http://127.0.0.1:${d.port}/src/App.jsx`)).text();
    expect(served).toContain('Edited once');

    // The module an update names is transformed as the update goes out, before any page asks for
    // it (a page's request then joins the transform under way): with no page fetching here, a
    // broken edit's transform error is in the log all the same.
    const statusLog = async () =>
      (
        (await (
          await fetch(`http://127.0.0.1:${d.port}/__preview/status`, {
            headers: { authorization: `Bearer ${d.token}` },
          })
        ).json()) as { log: string[] }
      ).log.join('\n');
    expect(await statusLog()).not.toContain('Pre-transform error');
    await sync.batch(3001, [
      { op: 'put', path: 'src/App.jsx', content: `${APP}\nexport const broken = ;\n` },
    ]);
    await sync.next((f) => f.type === 'hmr' && f['seq'] === 3001, 30_000, 'hmr 3001');
    await until(async () => /Pre-transform error[\s\S]*App\.jsx/.test(await statusLog()), 30_000, 'warm-up');
    await sync.batch(3002, [{ op: 'put', path: 'src/App.jsx', content: APP }]);
    await sync.next((f) => f.type === 'hmr' && f['seq'] === 3002, 30_000, 'hmr 3002');
    vite.close();
  });

  it('keeps React state across an edit of the component (Fast Refresh) in Chromium', async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${d.port}/`);
      const button = page.getByTestId('counter');
      await button.click();
      await button.click();
      await button.click();
      await expect.poll(() => button.textContent()).toBe('count is 3');
      const ack = await sync.batch(4000, [
        { op: 'put', path: 'src/App.jsx', content: APP.replace('Vite React preview', 'Fast Refresh works') },
      ]);
      expect(ack.type).toBe('ack');
      await expect
        .poll(() => page.getByTestId('title').textContent(), { timeout: 30_000 })
        .toBe('Fast Refresh works');
      expect(await button.textContent()).toBe('count is 3');
      await sync.next((f) => f.type === 'hmr' && f['seq'] === 4000, 30_000, 'hmr 4000');
    } finally {
      await chrome.close();
    }
  });
});

describe('readiness and reinstalls (vite-vanilla)', () => {
  let d: HostDaemon | undefined;
  afterAll(async () => {
    await d?.stop();
  });

  it('health is 503 until the dev server answers 200 on /, then 200', { timeout: 240_000 }, async () => {
    // Seed by hand without index.html: Vite answers 404 on / until the editor sends it.
    const projectDir = tempProjectDir();
    const src = join(TEMPLATES_DIR, 'vite-vanilla');
    writeFileSync(join(projectDir, 'package.json'), readFileSync(join(src, 'package.json')));
    mkdirSync(join(projectDir, 'src'));
    writeFileSync(join(projectDir, 'src/main.js'), readFileSync(join(src, 'src/main.js')));
    writeFileSync(join(projectDir, 'src/message.js'), readFileSync(join(src, 'src/message.js')));
    writeFileSync(join(projectDir, 'src/style.css'), readFileSync(join(src, 'src/style.css')));
    d = await spawnDaemon({ template: 'vite-vanilla', projectDir });
    const sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync?token=${d.token}`);
    const error = await sync.next(
      (f) => f.type === 'status' && f['phase'] === 'error',
      60_000,
      'error phase',
    );
    expect(String(error['message'])).toContain('404');
    const h = await health(d.port);
    expect(h.status).toBe(503);
    expect(h.body.phase).toBe('error');
    expect(
      (
        await sync.batch(1, [
          { op: 'put', path: 'index.html', content: readFileSync(join(src, 'index.html'), 'utf8') },
        ])
      ).type,
    ).toBe('ack');
    await sync.next((f) => f.type === 'status' && f['phase'] === 'ready', 60_000, 'ready');
    expect((await health(d.port)).status).toBe(200);
    const page = await (await fetch(`http://127.0.0.1:${d.port}/`)).text();
    expect(page).toContain('Vite vanilla preview');

    // An ordinary edit does not reinstall.
    const before = sync.frames.length;
    expect(
      (
        await sync.batch(2, [
          { op: 'put', path: 'src/message.js', content: 'export const message = "two";\n' },
        ])
      ).type,
    ).toBe('ack');
    // Rewriting package.json with the same bytes does not reinstall either.
    expect(
      (
        await sync.batch(3, [
          { op: 'put', path: 'package.json', content: readFileSync(join(src, 'package.json'), 'utf8') },
        ])
      ).type,
    ).toBe('ack');

    // A changed package.json does: installing → starting → ready, then a restart hmr for that seq.
    // No dependencies here, so npm has nothing to fetch; vite still resolves from the checkout.
    const pkg = { name: 'changed', private: true, type: 'module', dependencies: {} };
    expect(
      (await sync.batch(4, [{ op: 'put', path: 'package.json', content: JSON.stringify(pkg) }])).type,
    ).toBe('ack');
    const installing = await sync.next(
      (f) => f.type === 'status' && f['phase'] === 'installing',
      60_000,
      'installing',
    );
    expect(sync.frames.indexOf(installing)).toBeGreaterThan(before + 2);
    expect(
      sync.frames.slice(before, sync.frames.indexOf(installing)).some((f) => f['phase'] === 'installing'),
    ).toBe(false);
    const done = await sync.next(
      (f) => (f.type === 'hmr' && f['seq'] === 4) || (f.type === 'status' && f['phase'] === 'error'),
      120_000,
      'restart hmr',
      sync.frames.indexOf(installing),
    );
    expect(done).toMatchObject({ type: 'hmr', kind: 'restart' });
    const phases = sync.frames
      .slice(sync.frames.indexOf(installing), sync.frames.indexOf(done))
      .filter((f) => f.type === 'status')
      .map((f) => f['phase'])
      // While npm runs, status frames also carry its new output lines (same phase).
      .filter((p, i, all) => p !== all[i - 1]);
    expect(phases, JSON.stringify(sync.frames.slice(sync.frames.indexOf(installing)))).toEqual([
      'installing',
      'starting',
      'ready',
    ]);
    expect(existsSync(join(d.projectDir, 'node_modules/.preview-deps-hash'))).toBe(true);
    const status = (await (
      await fetch(`http://127.0.0.1:${d.port}/__preview/status`, {
        headers: { authorization: `Bearer ${d.token}` },
      })
    ).json()) as { log: string[] };
    expect(status.log.join('\n')).toContain('npm install');
    sync.close();
  });
});

describe('editor batches sent again under a new seq (origin ledger)', () => {
  it('answers a processed origin as the first time, writes nothing, and remembers it across a restart', async () => {
    const projectDir = tempProjectDir();
    let d = await spawnDaemon({ template: 'vite-vanilla', projectDir });
    try {
      const url = () => `ws://127.0.0.1:${d.port}/__preview/sync`;
      let sync = await SyncClient.connect(url(), { authorization: `Bearer ${d.token}` });
      const send = (seq: number, originSeq: number, ops: unknown[]) => {
        const from = sync.frames.length;
        sync.send({ type: 'batch', seq, ops, origin: { client: 'editor-1', seq: originSeq } });
        return sync.next(
          (f) =>
            sync.frames.indexOf(f) >= from && (f.type === 'ack' || f.type === 'error') && f['seq'] === seq,
          60_000,
          `answer to ${seq}`,
        );
      };
      const read = (p: string) =>
        existsSync(join(projectDir, p)) ? readFileSync(join(projectDir, p), 'utf8') : undefined;
      expect(await send(1, 1, [{ op: 'put', path: 'a.txt', content: 'old a' }])).toMatchObject({
        type: 'ack',
      });
      expect(await send(2, 2, [{ op: 'rename', from: 'a.txt', to: 'b.txt' }])).toMatchObject({ type: 'ack' });
      expect(await send(3, 3, [{ op: 'put', path: 'a.txt', content: 'new a' }])).toMatchObject({
        type: 'ack',
      });
      const refused = await send(4, 4, [{ op: 'put', path: '.preview-tmp/x', content: 'x' }]);
      expect(refused).toMatchObject({ type: 'error', code: 'invalid_path' });

      // A new sync owner sends batches 2 and 4 again, under new seqs.
      expect(await send(10, 2, [{ op: 'rename', from: 'a.txt', to: 'b.txt' }])).toEqual({
        type: 'ack',
        seq: 10,
        stage: 'applied',
      });
      expect(await send(11, 4, [{ op: 'put', path: '.preview-tmp/x', content: 'x' }])).toEqual({
        ...refused,
        seq: 11,
      });
      expect([read('a.txt'), read('b.txt')]).toEqual(['new a', 'old a']);

      // A replaced owner's batch arriving late (a seq below the last applied, an origin never seen)
      // is neither applied nor acked; the current owner's copy of it, later, is applied.
      const before = sync.frames.length;
      sync.send({
        type: 'batch',
        seq: 5,
        ops: [{ op: 'put', path: 'late.txt', content: 'late' }],
        origin: { client: 'editor-1', seq: 5 },
      });
      expect(await send(12, 5, [{ op: 'put', path: 'late.txt', content: 'late' }])).toMatchObject({
        type: 'ack',
        seq: 12,
      });
      expect(sync.frames.slice(before).some((f) => f['seq'] === 5)).toBe(false);
      expect(read('late.txt')).toBe('late');

      // The daemon restarts on the same project: it still knows what it applied.
      sync.close();
      await d.stop();
      d = await spawnDaemon({ template: 'vite-vanilla', projectDir });
      sync = await SyncClient.connect(url(), { authorization: `Bearer ${d.token}` });
      expect(await send(1, 2, [{ op: 'rename', from: 'a.txt', to: 'b.txt' }])).toMatchObject({ type: 'ack' });
      expect([read('a.txt'), read('b.txt')]).toEqual(['new a', 'old a']);
      expect(await send(2, 6, [{ op: 'rename', from: 'a.txt', to: 'c.txt' }])).toMatchObject({ type: 'ack' });
      expect([read('a.txt'), read('c.txt')]).toEqual([undefined, 'new a']);
      // A batch without an origin (the claimer's initial load) is applied by seq alone, as before.
      expect(await sync.batch(3, [{ op: 'put', path: 'd.txt', content: 'd' }])).toMatchObject({
        type: 'ack',
      });
      expect(read('d.txt')).toBe('d');
      sync.close();
    } finally {
      await d.stop();
      rmSync(projectDir, { recursive: true, force: true });
    }
  });
});

describe('a Vite restart with pages open (vite-vanilla)', () => {
  it('pages are told to reload, a page from an older server is told to reload when it connects, and the next server takes its own', {
    timeout: 240_000,
  }, async () => {
    // The template's files and a vite.config.js of the project's own (Vite restarts itself when it changes).
    const projectDir = tempProjectDir();
    cpSync(join(TEMPLATES_DIR, 'vite-vanilla'), projectDir, {
      recursive: true,
      filter: (src) => !src.includes('node_modules'),
    });
    writeFileSync(join(projectDir, 'vite.config.js'), 'export default {};\n');
    const d = await spawnDaemon({ template: 'vite-vanilla', projectDir });
    /** The HMR token of the `/@vite/client` the daemon serves now (what a page loaded now runs). */
    const clientToken = async (): Promise<string> => {
      const client = await (await fetch(`http://127.0.0.1:${d.port}/@vite/client`)).text();
      const token = /const wsToken = "([^"]+)"/.exec(client)?.[1];
      expect(token).toBeTruthy();
      return token as string;
    };
    /** An HMR socket as a page opens it, with its messages (and `closed` once the daemon closes it). */
    const hmr = (token: string): Promise<{ ws: WebSocket; messages: string[]; closed: Promise<number> }> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${d.port}/?token=${token}`, 'vite-hmr', {
          origin: `http://127.0.0.1:${d.port}`,
        });
        const messages: string[] = [];
        ws.on('message', (m) => messages.push(String(m)));
        const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
        ws.once('open', () => resolve({ ws, messages, closed }));
        ws.once('unexpected-response', (_q, r) => reject(new Error(`HMR upgrade answered ${r.statusCode}`)));
        ws.once('error', reject);
      });
    /** A page of the current server: its socket stays open and Vite says `connected`. */
    const current = async () => {
      const s = await hmr(await clientToken());
      await until(async () => s.messages.some((m) => m.includes('"connected"')), 30_000, 'connected');
      expect(s.messages.join()).not.toContain('full-reload');
      return s;
    };
    /** A page whose client an older server served: told to reload at once, then closed cleanly. */
    const stale = async (token: string) => {
      const s = await hmr(token);
      let code: number | undefined;
      void s.closed.then((c) => {
        code = c;
      });
      await until(async () => code !== undefined, 15_000, "the stale page's socket to be closed");
      expect(code).toBe(1000);
      expect(s.messages.map((m) => JSON.parse(m))).toEqual([{ type: 'full-reload', path: '*' }]);
    };
    try {
      await until(async () => (await health(d.port)).status === 200, 120_000, 'ready');
      const first = await clientToken();
      const page = await current();
      const sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync`, {
        authorization: `Bearer ${d.token}`,
      });
      // A change of the dependency fields reinstalls and restarts the dev server (no dependencies
      // here, so npm has nothing to fetch; vite still resolves from the checkout).
      const pkg = { name: 'changed', private: true, type: 'module', dependencies: {} };
      expect(
        (await sync.batch(1, [{ op: 'put', path: 'package.json', content: JSON.stringify(pkg) }])).type,
      ).toBe('ack');
      await until(
        async () => page.messages.some((m) => m.includes('"full-reload"')),
        60_000,
        'full-reload',
      ).catch((e) => {
        throw new Error(`${e.message}; got ${page.messages.join(' | ')}`);
      });
      await until(async () => (await health(d.port)).status === 200, 120_000, 'ready again');
      // A page that loaded from the first server but connects only now (its modules are not in
      // the new server's graph, so it would never get an update): reloaded.
      await stale(first);
      const second = await clientToken();
      expect(second).not.toBe(first);
      (await current()).ws.close();
      // A config edit after ready: Vite restarts itself (its watcher), and the daemon's server then
      // has one HMR listener, not two taking the same socket.
      const watcher = await current();
      expect(
        (
          await sync.batch(2, [
            { op: 'put', path: 'vite.config.js', content: 'export default { base: "/" };\n' },
          ])
        ).type,
      ).toBe('ack');
      await until(async () => watcher.ws.readyState === WebSocket.CLOSED, 60_000, "Vite's own restart");
      await until(async () => (await health(d.port)).status === 200, 120_000, 'ready after the config edit');
      await stale(second);
      for (let i = 0; i < 3; i++) (await current()).ws.close();
      expect((await health(d.port)).status).toBe(200);
      page.ws.close();
      sync.close();
      expect((await health(d.port)).status).toBe(200);
    } finally {
      await d.stop();
    }
  });
});
