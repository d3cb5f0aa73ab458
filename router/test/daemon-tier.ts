import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type Daemon, loadConfig, silentLogger, startDaemon } from '@preview/preview-daemon';
import {
  type Ack,
  InvalidInputError,
  NotFoundError,
  type Placement,
  type PreviewSpec,
  type Tier,
} from '@preview/tiers';
import { openWebSocketChannel } from '../src/sync/ws-channel.ts';

const TEMPLATES_DIR = join(import.meta.dirname, '../../templates');

/**
 * A server-side tier whose sandbox is the real preview-daemon, run in this process on a temp
 * project directory (the host-process form of the docker tier's sandbox): the daemon's own
 * validation and writer apply every batch. The project starts empty (no template seed) with the
 * express-pg template's dev server, which has nothing to run: file writes do not need it.
 * `dir(id)` is the project directory, for comparing the disk with `project_files`.
 */
export function createDaemonTier() {
  const sandboxes = new Map<string, { daemon: Daemon; dir: string; token: string }>();
  let openSyncCalls = 0;
  const get = (id: string) => {
    const s = sandboxes.get(id);
    if (!s) throw new NotFoundError('not_found', `preview ${id} has no daemon sandbox`);
    return s;
  };
  const tier: Tier & { dir(id: string): string; readonly openSyncCalls: number; nodeId: string } = {
    name: 'docker',
    /** The registered node this tier's placements name (set by the harness). */
    nodeId: '00000000-0000-4000-8000-000000000000',
    dir: (id) => get(id).dir,
    get openSyncCalls() {
      return openSyncCalls;
    },
    async create(spec: PreviewSpec): Promise<Placement> {
      const dir = await mkdtemp(join(tmpdir(), 'daemon-tier-'));
      // The claim's files, as the docker tier's claim writes them before the first edit.
      for (const [path, f] of Object.entries(spec.files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        await writeFile(
          join(dir, path),
          typeof f === 'string' ? f : Buffer.from(f.content, f.encoding === 'base64' ? 'base64' : 'utf8'),
        );
      }
      const token = randomBytes(24).toString('hex');
      const daemon = await startDaemon(
        loadConfig({
          PREVIEW_TEMPLATE: 'express-pg',
          PREVIEW_DAEMON_TOKEN: token,
          PREVIEW_DAEMON_PORT: '0',
          PREVIEW_DAEMON_HOST: '127.0.0.1',
          PREVIEW_PROJECT_DIR: dir,
          PREVIEW_TEMPLATES_DIR: TEMPLATES_DIR,
          PREVIEW_CACHE_DIR: join(dir, '.preview-tmp', 'cache'),
          PREVIEW_SEED: '0',
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        }),
        silentLogger,
      );
      sandboxes.set(spec.previewId, { daemon, dir, token });
      return {
        tier: 'docker',
        previewId: spec.previewId,
        nodeId: tier.nodeId,
        containerId: `daemon-${daemon.port}`,
        upstream: `http://127.0.0.1:${daemon.port}`,
      };
    },
    /** One batch on its own socket, as the pool agent's apply route does; the router sends batches through openSync. */
    async apply(id, batch) {
      const s = get(id);
      const ch = await openWebSocketChannel({
        url: `ws://127.0.0.1:${s.daemon.port}/__preview/sync`,
        token: s.token,
      });
      try {
        return await new Promise<Ack>((resolve, reject) => {
          setTimeout(
            () => reject(new Error(`batch ${batch.seq}: no answer from the daemon`)),
            10_000,
          ).unref();
          ch.onFrame((f) => {
            if (f.type === 'ack' && f.seq === batch.seq) resolve(f);
            else if (f.type === 'error' && f.seq === batch.seq)
              reject(new InvalidInputError(f.code, f.message));
          });
          ch.send(batch);
        });
      } finally {
        ch.close();
      }
    },
    async openSync(id) {
      openSyncCalls++;
      const s = get(id);
      return await openWebSocketChannel({
        url: `ws://127.0.0.1:${s.daemon.port}/__preview/sync`,
        token: s.token,
      });
    },
    async suspend() {},
    async resume() {},
    async destroy(id) {
      const s = sandboxes.get(id);
      if (!s) return false;
      sandboxes.delete(id);
      await s.daemon.close();
      await rm(s.dir, { recursive: true, force: true });
      return true;
    },
    async status(id) {
      return sandboxes.has(id) ? { phase: 'ready', log: [] } : undefined;
    },
    async capacity() {
      return { available: 100, total: 100 };
    },
    async close() {
      for (const id of [...sandboxes.keys()]) await tier.destroy(id);
    },
  };
  return tier;
}
