import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import type { FileOp } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../db/migrate.ts';
import { coalesce } from '../sync/persister.ts';
import { createPgSyncStore, type SyncStore } from './project-files.ts';

/**
 * Multi-op batches the sandbox applies in order (docker/preview-daemon/src/validate.test.ts runs the
 * same sequences through the daemon's validator and writer): the hub's persister and
 * `project_files` give the same files, whether the ops come in one batch or one batch each.
 */
const put = (path: string, content = 'x'): FileOp => ({ op: 'put', path, content, encoding: 'utf8' });
const del = (path: string): FileOp => ({ op: 'delete', path });
const mv = (from: string, to: string): FileOp => ({ op: 'rename', from, to });

const BEFORE = { 'src/a.js': 'a', file: 'f', 'a/x.js': 'old x', 'a/y.js': 'old y' };
const rest = { 'src/a.js': 'a', file: 'f' };

const CASES: Array<[string, FileOp[], Record<string, string>]> = [
  ['delete folder a, put a/x.js', [del('a'), put('a/x.js', 'new x')], { ...rest, 'a/x.js': 'new x' }],
  [
    'delete file, put a folder there',
    [del('file'), put('file/x.js', 'fx')],
    { 'src/a.js': 'a', 'a/x.js': 'old x', 'a/y.js': 'old y', 'file/x.js': 'fx' },
  ],
  ['delete folder a, put file a', [del('a'), put('a', 'a file')], { ...rest, a: 'a file' }],
  [
    'put in a folder, delete it, put a file there',
    [put('a/z.js'), del('a'), put('a', 'A')],
    { ...rest, a: 'A' },
  ],
  [
    'rename folder a to b, put file a',
    [mv('a', 'b'), put('a', 'A')],
    { ...rest, 'b/x.js': 'old x', 'b/y.js': 'old y', a: 'A' },
  ],
  [
    'delete folder src, rename folder a onto src',
    [del('src'), mv('a', 'src')],
    { file: 'f', 'src/x.js': 'old x', 'src/y.js': 'old y' },
  ],
  ['rename file onto a deleted folder', [del('a'), mv('file', 'a')], { 'src/a.js': 'a', a: 'f' }],
  [
    'rename a folder twice and write into it',
    [mv('a', 'b'), mv('b', 'c/d'), put('c/d/z.js', 'z')],
    { ...rest, 'c/d/x.js': 'old x', 'c/d/y.js': 'old y', 'c/d/z.js': 'z' },
  ],
  [
    'put into a new folder, then rename it',
    [put('n/m.js', 'm'), mv('n', 'o'), put('n', 'N')],
    { ...rest, 'a/x.js': 'old x', 'a/y.js': 'old y', 'o/m.js': 'm', n: 'N' },
  ],
];

describe('project_files after multi-op batches', () => {
  let db: TestDatabase;
  let store: SyncStore;
  beforeAll(async () => {
    db = await createTestDatabase();
    db.pool.on('error', () => {});
    await migrate(db.pool);
    store = createPgSyncStore(db.pool);
  });
  afterAll(async () => {
    await db?.drop();
  });

  async function run(entries: Array<{ seq: number; ops: FileOp[] }>): Promise<Record<string, string>> {
    const id = randomUUID();
    await db.pool.query(`INSERT INTO preview_sessions (id, user_id, template) VALUES ($1, $2, 'express')`, [
      id,
      randomUUID(),
    ]);
    const seed = Object.entries(BEFORE).map(([p, c]) => put(p, c));
    await store.write(id, coalesce([{ seq: 1, ops: seed, clientId: 'c', clientSeq: 1 }]), {
      clients: new Map(),
    });
    await store.write(id, coalesce(entries.map((e) => ({ ...e, clientId: 'c', clientSeq: e.seq }))), {
      lastSeq: entries.at(-1)!.seq,
      clients: new Map([['c', entries.at(-1)!.seq]]),
    });
    const { rows } = await db.pool.query<{ path: string; content: Buffer }>(
      'SELECT path, content FROM project_files WHERE preview_id = $1 ORDER BY path',
      [id],
    );
    return Object.fromEntries(rows.map((r) => [r.path, r.content.toString('utf8')]));
  }

  it.each(CASES)('one batch: %s', async (_name, ops, expected) => {
    expect(await run([{ seq: 2, ops }])).toEqual(expected);
  });

  it.each(CASES)('one batch per op, persisted together: %s', async (_name, ops, expected) => {
    expect(await run(ops.map((op, i) => ({ seq: 2 + i, ops: [op] })))).toEqual(expected);
  });
});
