import { timingSafeEqual } from 'node:crypto';
import {
  ForbiddenError,
  type NodeHeartbeat,
  type NodeRegistered,
  type NodeRegistration,
} from '@preview/tiers';
import type pg from 'pg';
import { newCredential, sha256 } from './auth/secrets.ts';
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
  readonly heartbeatMs: number;
  readonly ttlMs: number;

  constructor(o: {
    pool: pg.Pool;
    liveness: NodeLiveness;
    joinToken: string | undefined;
    heartbeatMs: number;
    ttlMs: number;
  }) {
    this.#pool = o.pool;
    this.#liveness = o.liveness;
    this.#joinToken = o.joinToken;
    this.heartbeatMs = o.heartbeatMs;
    this.ttlMs = o.ttlMs;
  }

  /** Registers (or re-registers, rotating the credential) a node by name. */
  async register(reg: NodeRegistration): Promise<NodeRegistered> {
    if (!this.#joinToken || !safeEqual(reg.joinToken, this.#joinToken))
      throw new ForbiddenError('joinToken is not valid for this router', { code: 'invalid_join_token' });
    const credential = newCredential('pn_');
    const { rows } = await this.#pool.query<{ id: string }>(
      `INSERT INTO preview_nodes (name, url, runtime, credential_hash, capacity, state, last_heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, 'active', now())
       ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, runtime = EXCLUDED.runtime,
         credential_hash = EXCLUDED.credential_hash, capacity = EXCLUDED.capacity, state = 'active',
         last_heartbeat_at = now()
       RETURNING id`,
      [reg.name, reg.url, reg.runtime, sha256(credential), JSON.stringify(reg.capacity)],
    );
    const nodeId = rows[0]!.id;
    await this.#liveness.beat({ nodeId, capacity: reg.capacity, sessions: [], at: Date.now() }, this.ttlMs);
    return { nodeId, credential, heartbeatMs: this.heartbeatMs };
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
