import { UnauthorizedError } from '@preview/tiers';
import type pg from 'pg';
import type { Principal } from './principal.ts';
import { sha256 } from './secrets.ts';

export interface Authenticator {
  /** The principal for an `Authorization` header value, `undefined` when there is none. Throws on a bad credential. */
  fromHeader(header: string | undefined): Promise<Principal | undefined>;
  fromToken(token: string): Promise<Principal>;
}

/**
 * Three kinds of bearer credentials: `pk_...` service API keys (sha256 in `api_keys`), `pn_...`
 * node credentials (sha256 in `preview_nodes`), anything else a Supabase JWT.
 */
export function createAuthenticator(options: {
  pool: pg.Pool;
  verifyJwt: (token: string) => Promise<string>;
}): Authenticator {
  const { pool, verifyJwt } = options;
  async function fromToken(token: string): Promise<Principal> {
    if (token.startsWith('pk_')) {
      const { rows } = await pool.query<{ id: string; user_id: string }>(
        'SELECT id, user_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
        [sha256(token)],
      );
      const row = rows[0];
      if (!row) throw new UnauthorizedError('invalid_api_key', 'unknown or revoked API key');
      return { kind: 'user', userId: row.user_id, via: 'api_key', keyId: row.id };
    }
    if (token.startsWith('pn_')) {
      const { rows } = await pool.query<{ id: string }>(
        `SELECT id FROM preview_nodes WHERE credential_hash = $1 AND state <> 'dead'`,
        [sha256(token)],
      );
      const row = rows[0];
      if (!row) throw new UnauthorizedError('invalid_node_credential', 'unknown node credential');
      return { kind: 'node', nodeId: row.id };
    }
    return { kind: 'user', userId: await verifyJwt(token), via: 'jwt' };
  }
  return {
    fromToken,
    async fromHeader(header) {
      if (!header) return undefined;
      const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
      if (!m) throw new UnauthorizedError('invalid_authorization', 'Authorization must be "Bearer <token>"');
      return await fromToken(m[1]!);
    },
  };
}
