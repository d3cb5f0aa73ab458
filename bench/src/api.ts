/**
 * `npm run bench -- api [--sessions 1000] [--n 300]`: router API latency with N live sessions in
 * Postgres. Create (browser tier: classify, place, persist files, guarded transitions, events),
 * get (with a fresh previewUrl token) and list, each through the full Hono app (`app.request()`:
 * auth, rate limits, validation) against the machine's real PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createRouter, loadConfig, migrate, signUserJwt } from '@preview/router';
import { createTestDatabase } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import pino from 'pino';
import { percentile, round1 } from './stats.ts';

const arg = (args: string[], name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};

export default async function api(args: string[]): Promise<object> {
  const liveSessions = arg(args, 'sessions', 1000);
  const n = arg(args, 'n', 300);
  const db = await createTestDatabase({ max: 20 });
  db.pool.on('error', () => {});
  const secret = randomBytes(32).toString('hex');
  const router = await createRouter({
    config: loadConfig({
      SUPABASE_JWT_SECRET: secret,
      PREVIEW_TOKEN_SECRET: `${secret}-p`,
      MAX_LIVE_PREVIEWS_PER_USER: String(liveSessions + n * 2),
      RATE_LIMIT_USER_PER_MIN: '1000000',
      RATE_LIMIT_IP_PER_MIN: '1000000',
    }),
    pool: db.pool,
    tiers: { browser: createBrowserTier() },
    log: pino({ level: 'silent' }),
    jobs: false,
  });
  try {
    await migrate(db.pool);
    // 1,000 live sessions over 50 users; the measured user owns 1/50th of them.
    const users = Array.from({ length: 50 }, () => randomUUID());
    const me = users[0]!;
    await db.pool.query(
      `INSERT INTO preview_sessions (user_id, template, state, tier, placement)
       SELECT ($1::uuid[])[1 + (g % 50)], 'vite-react', 'ready', 'browser', '{"tier":"browser"}'::jsonb
       FROM generate_series(1, $2) AS g`,
      [users, liveSessions],
    );
    await db.pool.query('ANALYZE');
    const mine = (
      await db.pool.query<{ id: string }>('SELECT id FROM preview_sessions WHERE user_id = $1', [me])
    ).rows.map((r) => r.id);
    const jwt = await signUserJwt({ secret, userId: me });
    const headers = { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' };
    const body = JSON.stringify({
      files: {
        'package.json':
          '{"name":"b","private":true,"dependencies":{"react":"^19"},"devDependencies":{"vite":"^8"}}',
        'index.html': '<div id="root"></div><script type="module" src="/src/main.jsx"></script>',
        'src/main.jsx':
          'import { createRoot } from "react-dom/client"; createRoot(root).render(<h1>hi</h1>);',
      },
      client: { webcontainer: true },
    });
    const ops = {
      create: async () => {
        const r = await router.app.request('/v1/previews', { method: 'POST', headers, body });
        if (r.status !== 201) throw new Error(`create ${r.status}: ${await r.text()}`);
        mine.push(((await r.json()) as { id: string }).id);
      },
      get: async () => {
        const id = mine[Math.floor(Math.random() * mine.length)];
        const r = await router.app.request(`/v1/previews/${id}`, { headers });
        if (r.status !== 200) throw new Error(`get ${r.status}`);
        await r.arrayBuffer();
      },
      list: async () => {
        const r = await router.app.request('/v1/previews?limit=50', { headers });
        if (r.status !== 200) throw new Error(`list ${r.status}`);
        await r.arrayBuffer();
      },
    };
    const countLive = async () =>
      (
        await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM preview_sessions WHERE state NOT IN ('ended','failed')`,
        )
      ).rows[0]!.n;
    const liveAtStart = await countLive();
    for (const op of Object.values(ops)) for (let i = 0; i < 20; i++) await op(); // warm-up
    const samples: Record<string, number[]> = { create: [], get: [], list: [] };
    for (let i = 0; i < n; i++)
      for (const [name, op] of Object.entries(ops)) {
        const t = performance.now();
        await op();
        samples[name]!.push(performance.now() - t);
      }
    const all = Object.values(samples).flat();
    const liveAtEnd = await countLive();
    const per = Object.fromEntries(
      Object.entries(samples).map(([k, v]) => [
        k,
        { p50_ms: round1(percentile(v, 50)), p99_ms: round1(percentile(v, 99)) },
      ]),
    );
    return {
      live_sessions: liveAtStart,
      live_sessions_at_end: liveAtEnd,
      p50_ms: round1(percentile(all, 50)),
      p99_ms: round1(percentile(all, 99)),
      ...per,
      requests: all.length,
      budget_p99_ms: 50,
    };
  } finally {
    await router.close();
    await db.drop();
  }
}
