import { mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { CloseCodes } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDaemonTier } from '../test/daemon-tier.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { connectRawEditor } from '../test/sync/index.ts';
import { loadConfig } from './config.ts';

/**
 * The one write path (issue 11, "the stored project can drift from what ran"): every batch, over
 * HTTP or the sync socket, is validated by the shared rules, applied by the sandbox (the real
 * preview-daemon here), and only then stored; a refused batch changes nothing anywhere.
 */
let h: Harness;
let tier: ReturnType<typeof createDaemonTier>;
let server: Server;
let port: number;

beforeAll(async () => {
  tier = createDaemonTier();
  h = await createHarness({ tiers: () => ({ docker: tier }) });
  server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as Server;
  await new Promise((r) => server.once('listening', r));
  h.router.attach(server);
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await h?.close();
});

const FILES = { 'index.html': '<h1>hi</h1>', 'src/main.txt': 'main' };

async function create(): Promise<string> {
  const res = await h.router.app.request('/v1/previews', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
    body: JSON.stringify({ files: FILES, serverOnly: true }),
  });
  const body = (await res.json()) as { id: string; tier: string };
  expect(res.status, JSON.stringify(body)).toBe(201);
  expect(body.tier, JSON.stringify(body)).toBe('docker');
  return body.id;
}

function put(id: string, body: unknown | Uint8Array) {
  return h.router.app.request(`/v1/previews/${id}/files`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
    body: body instanceof Uint8Array ? Buffer.from(body) : JSON.stringify(body),
  });
}

/** The answer is 200; otherwise the failure shows the router's error body. */
async function expectOk(res: Response | Promise<Response>): Promise<void> {
  const r = await res;
  expect(r.status, await r.clone().text()).toBe(200);
}

async function stored(id: string): Promise<Record<string, string>> {
  const files = await h.router.store.loadFiles(id);
  return Object.fromEntries(
    Object.entries(files).map(([p, f]) => [p, typeof f === 'string' ? f : `base64:${f.content}`]),
  );
}

async function onDisk(id: string): Promise<Record<string, string>> {
  const root = tier.dir(id);
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const d of await readdir(join(root, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (!rel && (d.name === '.preview-tmp' || d.name === 'node_modules')) continue;
      if (d.isDirectory()) await walk(p);
      else if (d.isFile()) out[p] = await readFile(join(root, p), 'utf8');
    }
  };
  await walk('');
  return out;
}

const lastSeq = async (id: string) => (await h.router.store.get(id))?.lastSeq;

async function refused(res: Response, status: number, code: string): Promise<string> {
  const body = (await res.json()) as { error?: { code: string; message: string } };
  expect(res.status, JSON.stringify(body)).toBe(status);
  expect(body.error?.code).toBe(code);
  return body.error?.message ?? '';
}

describe('one write path: what is stored is what ran', () => {
  it('a rename onto a directory, refused by the sandbox, changes neither project_files nor lastSeq (example 1)', async () => {
    const id = await create();
    const seqBefore = await lastSeq(id);
    const message = await refused(
      await put(id, { type: 'batch', seq: 1, ops: [{ op: 'rename', from: 'index.html', to: 'src' }] }),
      400,
      'invalid_path',
    );
    expect(message).toMatch(/"src".*directory.*\(rule is_directory\)/);
    expect(await stored(id)).toEqual(FILES);
    expect(await onDisk(id)).toEqual(FILES);
    expect(await lastSeq(id)).toBe(seqBefore);
  });

  it('an op through a symbolic link the app created is refused and stores nothing (example 1)', async () => {
    const id = await create();
    await mkdir(join(tier.dir(id), 'outside'));
    await symlink(join(tier.dir(id), 'outside'), join(tier.dir(id), 'link'));
    const seqBefore = await lastSeq(id);
    const message = await refused(
      await put(id, { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'link/x.txt', content: 'x' }] }),
      400,
      'invalid_path',
    );
    expect(message).toMatch(/rule symlink/);
    expect(await stored(id)).toEqual(FILES);
    expect(await lastSeq(id)).toBe(seqBefore);
  });

  it('paths under .preview-tmp/ are reserved over HTTP and sync alike, with the same code (example 1)', async () => {
    const id = await create();
    const message = await refused(
      await put(id, {
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: '.preview-tmp/origins.jsonl', content: 'x' }],
      }),
      400,
      'invalid_path',
    );
    expect(message).toBe('body.ops.0.path: must not be inside .preview-tmp/ (rule reserved)');
    const ed = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      {
        clientId: 'c-reserved',
      },
    );
    ed.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: '.preview-tmp/x', content: 'x' }] });
    await ed.waitFor((fs) => fs.some((f) => f.type === 'error'));
    expect(ed.frames.find((f) => f.type === 'error')).toMatchObject({
      code: 'invalid_path',
      seq: 1,
      message: 'ops.0.path: must not be inside .preview-tmp/ (rule reserved)',
    });
    ed.close();
    expect(await stored(id)).toEqual(FILES);
  });

  it('a bad path has one code and names its rule once, over HTTP and sync', async () => {
    const id = await create();
    const message = await refused(
      await put(id, { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a\\b', content: '' }] }),
      400,
      'invalid_path',
    );
    expect(message.match(/rule backslash/g)).toHaveLength(1);
    const ed = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      { clientId: 'c-backslash' },
    );
    ed.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a\\b', content: '' }] });
    await ed.waitFor((fs) => fs.some((f) => f.type === 'error'));
    const frame = ed.frames.find((f) => f.type === 'error') as { code: string; message: string };
    ed.close();
    expect(frame.code).toBe('invalid_path');
    expect(frame.message.match(/rule backslash/g)).toHaveLength(1);
    // The same words as over HTTP, but for the field's place in the frame.
    expect(`body.${frame.message}`).toBe(message);
  });

  it('a stale or duplicate seq over HTTP is answered as such, never acked as applied (example 2)', async () => {
    const id = await create();
    expect(
      (await put(id, { type: 'batch', seq: 5, ops: [{ op: 'put', path: 'a.txt', content: 'one' }] })).status,
    ).toBe(200);
    await refused(
      await put(id, { type: 'batch', seq: 3, ops: [{ op: 'put', path: 'a.txt', content: 'two' }] }),
      409,
      'stale_seq',
    );
    await refused(
      await put(id, { type: 'batch', seq: 5, ops: [{ op: 'put', path: 'a.txt', content: 'three' }] }),
      409,
      'duplicate_seq',
    );
    expect((await stored(id))['a.txt']).toBe('one');
    expect((await onDisk(id))['a.txt']).toBe('one');
  });

  it('HTTP PUTs and the sync socket on one preview share one order: disk and store agree (example 2)', async () => {
    const id = await create();
    const ed = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      {
        clientId: 'c-mixed',
      },
    );
    await expectOk(
      put(id, { type: 'batch', seq: 10, ops: [{ op: 'put', path: 'a.txt', content: 'http-1' }] }),
    );
    ed.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'sync-1' }] });
    await ed.waitFor(() => ed.acked(1, 'persisted'));
    await expectOk(
      put(id, { type: 'batch', seq: 11, ops: [{ op: 'put', path: 'a.txt', content: 'http-2' }] }),
    );
    ed.send({ type: 'batch', seq: 2, ops: [{ op: 'rename', from: 'a.txt', to: 'b.txt' }] });
    await ed.waitFor(() => ed.acked(2, 'persisted'));
    ed.close();
    const disk = await onDisk(id);
    expect(disk['b.txt']).toBe('http-2');
    expect(await stored(id)).toEqual(disk);
  });

  it('invalid UTF-8 in a utf8 put is a 400 naming the path, and nothing is stored (example 3)', async () => {
    const id = await create();
    const head = Buffer.from('{"type":"batch","seq":1,"ops":[{"op":"put","path":"bad.txt","content":"a');
    const tail = Buffer.from('b"}]}');
    const body = new Uint8Array(Buffer.concat([head, Buffer.from([0xff, 0xfe]), tail]));
    const message = await refused(await put(id, body), 400, 'invalid_utf8');
    expect(message).toContain('"bad.txt"');
    expect(await stored(id)).toEqual(FILES);
  });

  it('after DELETE the hub closes the editors with `ended` and never reopens a channel to the sandbox', async () => {
    const id = await create();
    const ed = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      {
        clientId: 'c-deleted',
      },
    );
    ed.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'x' }] });
    await ed.waitFor(() => ed.acked(1, 'persisted'));
    const del = await h.router.app.request(`/v1/previews/${id}`, {
      method: 'DELETE',
      headers: bearer(h.alice.jwt),
    });
    expect(del.status).toBeLessThan(300);
    const closed = await ed.waitClosed(10_000);
    expect(closed.code).toBe(CloseCodes.ended);
    const calls = tier.openSyncCalls;
    // Two owner reopen periods (50 ms doubling): a hub that retried would have called again.
    await new Promise((r) => setTimeout(r, 1500));
    expect(tier.openSyncCalls).toBe(calls);
  });
});

describe('strict input (issue 11)', () => {
  // The user's live previews are capped; these tests give theirs back.
  const remove = async (id: string) =>
    expect(
      (await h.router.app.request(`/v1/previews/${id}`, { method: 'DELETE', headers: bearer(h.alice.jwt) }))
        .status,
    ).toBe(204);
  const createWith = (key: string, files: Record<string, string>) =>
    h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files, serverOnly: true }),
    });

  it('an Idempotency-Key reused with a different body is a 422 idempotency_mismatch; the first preview is untouched (example 4)', async () => {
    const key = `k-${Math.random().toString(36).slice(2)}`;
    const first = await createWith(key, FILES);
    const { id } = (await first.json()) as { id: string };
    expect(first.status).toBe(201);
    const again = await createWith(key, FILES);
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    const message = await refused(
      await createWith(key, { 'index.html': '<h1>other</h1>' }),
      422,
      'idempotency_mismatch',
    );
    expect(message).toContain(JSON.stringify(key));
    expect(await stored(id)).toEqual(FILES);
    await remove(id);
  });

  it('a body over MAX_REQUEST_BODY_BYTES is a 413 naming the limit, before it is read (example 7)', async () => {
    const limit = loadConfig({}).MAX_REQUEST_BODY_BYTES; // the harness keeps the default
    const id = await create();
    // Declared length over the cap: refused without reading.
    const declared = await h.router.app.request(`/v1/previews/${id}/files`, {
      method: 'PUT',
      headers: {
        'content-type': 'application/json',
        'content-length': String(limit + 1),
        ...bearer(h.alice.jwt),
      },
      body: new Uint8Array(limit + 1),
    });
    expect(await refused(declared, 413, 'body_too_large')).toBe(
      `body: larger than ${limit} bytes (rule max_body_bytes)`,
    );
    // Streamed without a length (chunked): refused once the cap is passed; the rest is never pulled.
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    const chunks = 200;
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (pulled++ >= chunks) ctrl.close();
        else ctrl.enqueue(chunk);
      },
    });
    const streamed = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body,
      duplex: 'half',
    } as RequestInit);
    await refused(streamed, 413, 'body_too_large');
    expect(pulled).toBeLessThan(Math.ceil(limit / chunk.length) + 4);
    expect(await stored(id)).toEqual(FILES);
    await remove(id);
  });
});

describe('folders are first-class (issue 10, example 4)', () => {
  const WIDGETS = { 'src/widgets/a.txt': 'a', 'src/widgets/deep/b.txt': 'b', 'src/widgetsx.txt': 'keep' };

  it('deleting a folder removes it and everything under it from the sandbox and project_files', async () => {
    const id = await create();
    const ed = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      {
        clientId: 'c-folder-delete',
      },
    );
    ed.send({
      type: 'batch',
      seq: 1,
      ops: Object.entries(WIDGETS).map(([path, content]) => ({ op: 'put', path, content })),
    });
    ed.send({ type: 'batch', seq: 2, ops: [{ op: 'delete', path: 'src/widgets' }] });
    await ed.waitFor(() => ed.acked(2, 'persisted'));
    ed.close();
    const want = { ...FILES, 'src/widgetsx.txt': 'keep' };
    expect(await onDisk(id)).toEqual(want);
    expect(await stored(id)).toEqual(want);
    // Over HTTP too.
    expect((await put(id, { type: 'batch', seq: 1, ops: [{ op: 'delete', path: 'src' }] })).status).toBe(200);
    expect(await onDisk(id)).toEqual({ 'index.html': FILES['index.html'] });
    expect(await stored(id)).toEqual({ 'index.html': FILES['index.html'] });
  });

  it('renaming a folder moves all of it, over PUT /files as over sync', async () => {
    const id = await create();
    const lib = { 'src/lib/a.txt': 'a', 'src/lib/deep/b.txt': 'b' };
    expect(
      (
        await put(id, {
          type: 'batch',
          seq: 1,
          ops: Object.entries(lib).map(([path, content]) => ({ op: 'put', path, content })),
        })
      ).status,
    ).toBe(200);
    const res = await put(id, {
      type: 'batch',
      seq: 2,
      ops: [{ op: 'rename', from: 'src/lib', to: 'src/lib2' }],
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const want = { ...FILES, 'src/lib2/a.txt': 'a', 'src/lib2/deep/b.txt': 'b' };
    expect(await onDisk(id)).toEqual(want);
    expect(await stored(id)).toEqual(want);
  });
});
