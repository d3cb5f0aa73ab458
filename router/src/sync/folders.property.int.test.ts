import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import type { FileOp, PreviewSpec } from '@preview/tiers';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDaemonTier } from '../../test/daemon-tier.ts';
import { connectRawEditor, type RawEditor, serveSyncHub } from '../../test/sync/index.ts';
import { migrate } from '../db/migrate.ts';
import { createMemoryPubSub } from '../infra/pubsub.ts';
import { createSyncHub, type SyncHub } from './hub.ts';
import { createMemorySyncState } from './state.ts';

/**
 * Folders are first-class (issue 10): after any sequence of put / delete / rename on files and
 * folders, the sandbox (the real preview-daemon), `project_files` (the hub's persister on Postgres)
 * and a pure model of the rules agree, and the batches the sandbox refused are the ones the model
 * refuses. 1,000 random sequences, each op its own batch, through one editor socket.
 */

/** The sandbox's rules as a pure model: files with content, and the folders that exist. */
class Model {
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>();

  kind(p: string): 'file' | 'dir' | 'missing' {
    return this.files.has(p) ? 'file' : this.dirs.has(p) ? 'dir' : 'missing';
  }

  /** The daemon's path check: no file on the way, and a write target is not a folder. */
  #pathOk(p: string, writeTarget: boolean): boolean {
    const segs = p.split('/');
    for (let i = 1; i <= segs.length; i++) {
      const k = this.kind(segs.slice(0, i).join('/'));
      if (k === 'missing') return true;
      if (i < segs.length && k === 'file') return false;
      if (i === segs.length && k === 'dir' && writeTarget) return false;
    }
    return true;
  }

  #mkParents(p: string) {
    const segs = p.split('/');
    for (let i = 1; i < segs.length; i++) this.dirs.add(segs.slice(0, i).join('/'));
  }

  #under(p: string) {
    const prefix = `${p}/`;
    return {
      files: [...this.files.keys()].filter((x) => x.startsWith(prefix)),
      dirs: [...this.dirs].filter((x) => x.startsWith(prefix)),
    };
  }

  /** Applies one op; false when the sandbox refuses it (nothing changes then). */
  apply(op: FileOp): boolean {
    if (op.op === 'put') {
      if (!this.#pathOk(op.path, true)) return false;
      this.#mkParents(op.path);
      this.files.set(op.path, op.content);
      return true;
    }
    if (op.op === 'delete') {
      if (!this.#pathOk(op.path, false)) return false;
      const u = this.#under(op.path);
      for (const f of u.files) this.files.delete(f);
      for (const d of u.dirs) this.dirs.delete(d);
      this.files.delete(op.path);
      this.dirs.delete(op.path);
      return true;
    }
    const { from, to } = op;
    if (!this.#pathOk(from, false) || !this.#pathOk(to, true)) return false;
    if (from !== to && to.startsWith(`${from}/`)) return false;
    if (from !== to && this.kind(from) === 'dir' && this.kind(to) === 'file') return false;
    this.#mkParents(to);
    if (from === to) return true;
    const k = this.kind(from);
    if (k === 'file') {
      this.files.set(to, this.files.get(from) as string);
      this.files.delete(from);
    } else if (k === 'dir') {
      const u = this.#under(from);
      const moved = (x: string) => to + x.slice(from.length);
      for (const f of u.files) {
        this.files.set(moved(f), this.files.get(f) as string);
        this.files.delete(f);
      }
      for (const d of u.dirs) {
        this.dirs.delete(d);
        this.dirs.add(moved(d));
      }
      this.dirs.delete(from);
      this.dirs.add(to);
    }
    return true;
  }
}

const segment = fc.constantFrom('a', 'b');
const path = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
const op: fc.Arbitrary<FileOp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(path, fc.nat(999))
      .map(([p, n]) => ({ op: 'put', path: p, content: `v${n}`, encoding: 'utf8' }) as const),
  },
  { weight: 2, arbitrary: path.map((p) => ({ op: 'delete', path: p }) as const) },
  { weight: 2, arbitrary: fc.tuple(path, path).map(([from, to]) => ({ op: 'rename', from, to }) as const) },
);

const silent = { debug() {}, info() {}, warn() {}, error() {} };
let db: TestDatabase;
let tier: ReturnType<typeof createDaemonTier>;
let hub: SyncHub;
let srv: Awaited<ReturnType<typeof serveSyncHub>>;
let ed: RawEditor;
const previewId = randomUUID();

beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.pool);
  await db.pool.query(
    `INSERT INTO preview_sessions (id, user_id, template, state) VALUES ($1, $2, 'express-pg', 'ready')`,
    [previewId, randomUUID()],
  );
  tier = createDaemonTier();
  await tier.create({ previewId, files: {} } as unknown as PreviewSpec);
  hub = createSyncHub({
    pool: db.pool,
    pubsub: createMemoryPubSub(),
    state: createMemorySyncState(),
    log: silent,
    openChannel: (id) => tier.openSync(id),
  });
  srv = await serveSyncHub(hub);
  ed = await connectRawEditor(`ws://127.0.0.1:${srv.port}/v1/previews/${previewId}/sync`, {
    clientId: 'prop',
  });
});
afterAll(async () => {
  ed?.close();
  await srv?.close();
  await hub?.close();
  await tier?.close();
  await db?.drop();
});

async function onDisk(): Promise<Record<string, string>> {
  const root = tier.dir(previewId);
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const d of await readdir(join(root, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (!rel && d.name === '.preview-tmp') continue;
      if (d.isDirectory()) await walk(p);
      else out[p] = await readFile(join(root, p), 'utf8');
    }
  };
  await walk('');
  return out;
}

async function stored(): Promise<Record<string, string>> {
  const r = await db.pool.query<{ path: string; content: Buffer }>(
    'SELECT path, content FROM project_files WHERE preview_id = $1',
    [previewId],
  );
  return Object.fromEntries(r.rows.map((x) => [x.path, x.content.toString('utf8')]));
}

const sorted = (o: Record<string, string>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

describe('files and folders: sandbox, project_files and the model agree', () => {
  it('after 1,000 random sequences of put / delete / rename', async () => {
    let seq = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
        runs++;
        const model = new Model();
        // Start from an empty project: the folders every path lives in are removed (a folder delete).
        const reset = ++seq;
        ed.send({
          type: 'batch',
          seq: reset,
          ops: [
            { op: 'delete', path: 'a' },
            { op: 'delete', path: 'b' },
          ],
        });
        const refusedByModel: number[] = [];
        const first = seq + 1;
        for (const o of ops) {
          seq++;
          if (!model.apply(o)) refusedByModel.push(seq);
          ed.send({ type: 'batch', seq, ops: [o] });
        }
        await ed.waitFor(() => ed.acked(seq, 'persisted'), 30_000);
        const refusedBySandbox = ed.frames
          .filter((f) => f.type === 'error' && f.seq !== undefined && f.seq >= first && f.seq <= seq)
          .map((f) => (f as { seq: number }).seq);
        ed.frames.splice(0);
        const want = sorted(Object.fromEntries(model.files));
        expect(refusedBySandbox, JSON.stringify(ops)).toEqual(refusedByModel);
        expect(sorted(await onDisk()), JSON.stringify(ops)).toEqual(want);
        expect(sorted(await stored()), JSON.stringify(ops)).toEqual(want);
      }),
      { numRuns: 1000 },
    );
    expect(runs).toBeGreaterThanOrEqual(1000);
  }, 900_000);
});
