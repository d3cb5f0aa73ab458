import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  ForbiddenError,
  type NodeHeartbeat,
  type NodeRegistered,
  type NodeRegistration,
} from '@preview/tiers';
import type pg from 'pg';
import { sha256 } from './auth/secrets.ts';
import type { NodeLiveness } from './infra/liveness.ts';

export interface NodeRecord {
  id: string;
  name: string;
  url: string;
  runtime: 'docker' | 'process';
  alive: boolean;
}

/**
 * Pool-agent nodes: registration (join token → node credential, stored as a sha256) and
 * heartbeats (liveness with a TTL in Redis, capacity in Postgres).
 */
export class NodeRegistry {
  readonly #pool: pg.Pool;
  readonly #liveness: NodeLiveness;
  readonly #joinToken: string | undefined;
  readonly #secret: string;
  readonly heartbeatMs: number;
  readonly ttlMs: number;
  readonly #database: { host: string; port: number } | undefined;

  constructor(o: {
    pool: pg.Pool;
    liveness: NodeLiveness;
    joinToken: string | undefined;
    /** Key of the node credentials' HMAC; the same on every replica. */
    credentialSecret: string;
    heartbeatMs: number;
    ttlMs: number;
    /** Where previews' DATABASE_URLs point (told to each agent at registration); none without databases. */
    database?: { host: string; port: number } | undefined;
  }) {
    this.#database = o.database;
    this.#secret = o.credentialSecret;
    this.#pool = o.pool;
    this.#liveness = o.liveness;
    this.#joinToken = o.joinToken;
    this.heartbeatMs = o.heartbeatMs;
    this.ttlMs = o.ttlMs;
  }

  /**
   * Registers (or re-registers, rotating the credential) a node by name. The answer names the
   * preview database's host and port when the router hands previews a database.
   */
  async register(reg: NodeRegistration): Promise<NodeRegistered> {
    if (!this.#joinToken || !safeEqual(reg.joinToken, this.#joinToken))
      throw new ForbiddenError('invalid_join_token', 'joinToken is not valid for this router');
    const nonce = randomBytes(12).toString('base64url');
    const credential = this.#credential(reg.name, nonce);
    const { rows } = await this.#pool.query<{ id: string }>(
      `INSERT INTO preview_nodes (name, url, runtime, credential_hash, credential_nonce, capacity, state, last_heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'active', now())
       ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, runtime = EXCLUDED.runtime,
         credential_hash = EXCLUDED.credential_hash, credential_nonce = EXCLUDED.credential_nonce,
         capacity = EXCLUDED.capacity, state = 'active', last_heartbeat_at = now()
       RETURNING id`,
      [reg.name, reg.url, reg.runtime, sha256(credential), nonce, JSON.stringify(reg.capacity)],
    );
    const nodeId = rows[0]!.id;
    await this.#liveness.beat(
      { nodeId, capacity: reg.capacity, sessions: [], at: Date.now(), registered: true },
      this.ttlMs,
    );
    return {
      nodeId,
      credential,
      heartbeatMs: this.heartbeatMs,
      ...(this.#database ? { database: { ...this.#database } } : {}),
    };
  }

  #credential(name: string, nonce: string): string {
    return `pn_${createHmac('sha256', this.#secret).update(`${name}:${nonce}`).digest('base64url')}`;
  }

  /** How the router reaches a node's agent: its URL and current credential (recomputed, never stored). */
  async endpoint(nodeId: string): Promise<{ nodeId: string; url: string; token: string } | undefined> {
    const { rows } = await this.#pool.query<{ name: string; url: string; credential_nonce: string | null }>(
      `SELECT name, url, credential_nonce FROM preview_nodes WHERE id = $1 AND state <> 'dead'`,
      [nodeId],
    );
    const r = rows[0];
    if (!r?.credential_nonce) return undefined;
    return { nodeId, url: r.url, token: this.#credential(r.name, r.credential_nonce) };
  }

  async heartbeat(nodeId: string, hb: NodeHeartbeat): Promise<{ ok: true; nextHeartbeatMs: number }> {
    await this.#liveness.beat(
      { nodeId, capacity: hb.capacity, sessions: hb.sessions, at: hb.at },
      this.ttlMs,
    );
    await this.#pool.query(
      `UPDATE preview_nodes SET capacity = $2, last_heartbeat_at = now(), state = 'active' WHERE id = $1`,
      [nodeId, JSON.stringify(hb.capacity)],
    );
    return { ok: true, nextHeartbeatMs: this.heartbeatMs };
  }

  async list(): Promise<NodeRecord[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      name: string;
      url: string;
      runtime: 'docker' | 'process';
    }>(`SELECT id, name, url, runtime FROM preview_nodes WHERE state <> 'dead' ORDER BY name`);
    return await Promise.all(rows.map(async (r) => ({ ...r, alive: await this.#liveness.isAlive(r.id) })));
  }

  get liveness(): NodeLiveness {
    return this.#liveness;
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
