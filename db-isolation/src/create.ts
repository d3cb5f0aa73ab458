import { type IsolationContext, LOCK_NS, mapPgError, REGISTRY } from './context.ts';
import type { PreviewDatabase } from './db-isolation.ts';
import { namesFor } from './names.ts';

/** `DbIsolation.create()`: the preview's schema and role, with a new password (see its docstring). */
export async function createPreviewSchema(
  ctx: IsolationContext,
  previewId: string,
  opts: { signal?: AbortSignal } = {},
): Promise<PreviewDatabase> {
  const { admin, o, log, lockTimeout, isSuperuser, nextCredential } = ctx;
  const group = o.groupRole;
  const n = namesFor(previewId);
  opts.signal?.throwIfAborted();
  const { password, verifier } = await nextCredential();
  opts.signal?.throwIfAborted();
  const su = await isSuperuser();
  // One round trip, one implicit transaction; every name is hex from a validated uuid and the
  // verifier is base64 + '$:', so nothing here comes from caller text.
  const attrs = `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT ${o.connectionLimit} PASSWORD '${verifier}'`;
  // Each variant is one round trip and one implicit transaction. Every name is hex from a validated
  // uuid and the verifier is base64 plus '$:', so nothing here comes from caller text.
  const head = `${lockTimeout};
    ${o.durableCreate ? '' : 'SET LOCAL synchronous_commit = off;'}
    SELECT pg_advisory_xact_lock(${LOCK_NS}, hashtext('${n.hex}'));`;
  // A non-superuser admin must be a member of the role to give it the schema, end its sessions,
  // drop what it owns and read it for export.
  const member = su ? '' : `GRANT ${n.role} TO current_user;`;
  const tail = `ALTER ROLE ${n.role} SET statement_timeout = ${o.statementTimeoutMs};
    ALTER ROLE ${n.role} SET search_path = ${n.schema};
    INSERT INTO ${REGISTRY} AS r (preview_id, schema_name, role_name) VALUES ('${n.previewId}', '${n.schema}', '${n.role}')
      ON CONFLICT (preview_id) DO UPDATE SET state = 'active', dropped_at = NULL,
        created_at = CASE WHEN r.state = 'dropped' THEN now() ELSE r.created_at END;`;
  const fresh = `${head}
    CREATE ROLE ${n.role} WITH ${attrs} IN ROLE ${group};
    ${member}
    CREATE SCHEMA ${n.schema} AUTHORIZATION ${n.role};
    ${tail}`;
  // The role or schema exists already (create again, a half-finished drop): bring both in line.
  const ensure = `${head}
    DO $do$ BEGIN
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${n.role}') THEN
        ALTER ROLE ${n.role} WITH ${attrs};
        GRANT ${group} TO ${n.role};
      ELSE
        CREATE ROLE ${n.role} WITH ${attrs} IN ROLE ${group};
      END IF;
      ${member}
      IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '${n.schema}') THEN
        ALTER SCHEMA ${n.schema} OWNER TO ${n.role};
      ELSE
        CREATE SCHEMA ${n.schema} AUTHORIZATION ${n.role};
      END IF;
    END $do$;
    ${tail}`;
  try {
    try {
      await admin.query(fresh);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== '42710' && code !== '42P06') throw e;
      opts.signal?.throwIfAborted();
      await admin.query(ensure);
    }
  } catch (e) {
    throw mapPgError(e, n, 'create');
  }
  const url = new URL(o.previewDatabaseUrl);
  url.username = n.role;
  url.password = password;
  const prisma = new URL(url);
  prisma.searchParams.set('schema', n.schema);
  log.info({ previewId: n.previewId, schema: n.schema }, 'preview schema ready');
  return {
    previewId: n.previewId,
    schema: n.schema,
    role: n.role,
    databaseUrl: url.toString(),
    prismaDatabaseUrl: prisma.toString(),
  };
}
