import { requirePrerequisites } from '@preview/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { setAppEnv, waitReady } from '../daemon-client.ts';
import { newDaemonToken } from '../pool.ts';
import type { ContainerRuntime } from './types.ts';

export interface RuntimeContractOptions {
  name: string;
  create: () => Promise<ContainerRuntime>;
  /**
   * What this implementation needs and this machine lacks (e.g. the installed templates), or
   * `undefined`: every case then fails naming it. Never a skip (issue 12).
   */
  missing?: string | undefined;
  readyTimeoutMs?: number;
}

async function healthStatus(upstream: string, timeoutMs = 1500): Promise<number | 'timeout'> {
  try {
    const res = await fetch(`${upstream}/__preview/health`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 'timeout';
  }
}

/**
 * The one contract every {@link ContainerRuntime} meets. Each implementation's test calls this.
 *
 * @example
 * runRuntimeContract({ name: 'docker', create: () => createDockerRuntime(opts), missing: dockerMissing });
 */
export function runRuntimeContract(options: RuntimeContractOptions): void {
  describe(`ContainerRuntime contract: ${options.name}`, () => {
    let runtime: ContainerRuntime;
    const created: string[] = [];
    const timeoutMs = options.readyTimeoutMs ?? 60_000;

    // Each case fails naming what is missing (a failed beforeAll would count them as skipped).
    beforeEach(() => requirePrerequisites(options.missing));
    beforeAll(async () => {
      if (options.missing) return;
      runtime = await options.create();
    });
    afterAll(async () => {
      for (const id of created) await runtime?.remove(id).catch(() => {});
      await runtime?.close();
    });

    it('creates a sandbox whose daemon answers health, lists it, and removes it once', async () => {
      const box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
      created.push(box.id);
      expect(box.state).toBe('running');
      // A loopback port, or the sandbox's own address on a private network: never a public one.
      expect(box.upstream).toMatch(
        /^http:\/\/(127\.0\.0\.1|10\.\d+\.\d+\.\d+|172\.(1[6-9]|2\d|3[01])\.\d+\.\d+|192\.168\.\d+\.\d+):\d+$/,
      );
      expect(box.previewId).toBeUndefined();
      await waitReady(box.upstream, { timeoutMs });
      const listed = await runtime.list();
      expect(listed.map((b) => b.id)).toContain(box.id);
      const seen = await runtime.inspect(box.id);
      expect(seen?.template).toBe('vite-vanilla');
      expect(seen?.daemonToken).toBe(box.daemonToken);
      expect(await runtime.remove(box.id)).toBe(true);
      expect(await runtime.remove(box.id)).toBe(false);
      expect(await runtime.inspect(box.id)).toBeUndefined();
      expect((await runtime.list()).map((b) => b.id)).not.toContain(box.id);
    });

    it('records the preview a sandbox serves (assign), also for a directly created one', async () => {
      const warm = await runtime.create({
        template: 'vite-react',
        daemonToken: newDaemonToken(),
        pool: 'vite-react',
      });
      created.push(warm.id);
      await runtime.assign(warm.id, 'p_contract_a');
      expect((await runtime.inspect(warm.id))?.previewId).toBe('p_contract_a');
      const cold = await runtime.create({
        template: 'vite-vanilla',
        daemonToken: newDaemonToken(),
        previewId: 'p_contract_b',
      });
      created.push(cold.id);
      expect(cold.previewId).toBe('p_contract_b');
      const ids = (await runtime.list()).map((b) => b.previewId);
      expect(ids).toEqual(expect.arrayContaining(['p_contract_a', 'p_contract_b']));
    });

    it('pauses (the daemon stops answering) and unpauses (it answers again)', async () => {
      const box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
      created.push(box.id);
      await waitReady(box.upstream, { timeoutMs });
      await runtime.pause(box.id);
      expect((await runtime.inspect(box.id))?.state).toBe('paused');
      expect(await healthStatus(box.upstream, 800)).toBe('timeout');
      await runtime.unpause(box.id);
      expect((await runtime.inspect(box.id))?.state).toBe('running');
      await waitReady(box.upstream, { timeoutMs: 10_000 });
    });

    it('passes the app environment: at create (PREVIEW_APP_ENV) and to a running sandbox (the daemon route)', async () => {
      // express-pg's /api/health says whether the app saw a DATABASE_URL (pg connects lazily).
      const dbFlag = async (upstream: string) => {
        const res = await fetch(`${upstream}/api/health`);
        return ((await res.json()) as { database: boolean }).database;
      };
      const url = 'postgres://p_contract:pw@db.invalid:5432/app';
      const cold = await runtime.create({
        template: 'express-pg',
        daemonToken: newDaemonToken(),
        env: { PREVIEW_APP_ENV: JSON.stringify({ DATABASE_URL: url }) },
      });
      created.push(cold.id);
      const warm = await runtime.create({
        template: 'express-pg',
        daemonToken: newDaemonToken(),
        pool: 'express-pg',
      });
      created.push(warm.id);
      await waitReady(cold.upstream, { timeoutMs });
      expect(await dbFlag(cold.upstream)).toBe(true);
      await waitReady(warm.upstream, { timeoutMs });
      expect(await dbFlag(warm.upstream)).toBe(false);
      expect(await setAppEnv(warm.upstream, warm.daemonToken, { DATABASE_URL: url })).toEqual({
        applied: true,
      });
      await waitReady(warm.upstream, { timeoutMs });
      expect(await dbFlag(warm.upstream)).toBe(true);
    });

    it('reports memory in use and returns log lines', async () => {
      const box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
      created.push(box.id);
      await waitReady(box.upstream, { timeoutMs });
      const bytes = await runtime.memoryBytes(box.id);
      expect(bytes).toBeGreaterThan(1024 * 1024);
      expect(Array.isArray(await runtime.logs(box.id))).toBe(true);
    });
  });
}
