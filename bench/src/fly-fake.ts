/**
 * `npm run bench -- fly-fake [--previews 3] [--edits 100]`: the fly tier against the fake Machines API
 * whose machines run the real preview-daemon as host processes. Reports create → ready (API calls,
 * machine start, daemon + Vite up), apply → ack and openSync send → ack latencies through the fake edge.
 * It measures this codebase's overhead, not Fly's boot time.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ServerFrame } from '@preview/tiers';
import { createFlyTier } from '@preview/tiers/fly';
import { daemonRunner, FLY_MACHINES_API_FIXTURE, startFakeMachinesApi } from '@preview/tiers/testkit/fly';
import { percentile, round1 } from './stats.ts';

function arg(args: string[], name: string, def: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
}

export default async function (args: string[]): Promise<object> {
  const previews = arg(args, 'previews', 3);
  const edits = arg(args, 'edits', 100);
  const repo = resolve(import.meta.dirname, '../..');
  const built = join(repo, 'docker/preview-daemon/dist/daemon.mjs');
  const paths = { templatesDir: join(repo, 'templates'), nodeModules: join(repo, 'node_modules') };
  const runner = existsSync(built)
    ? daemonRunner({ entry: built, ...paths })
    : daemonRunner({
        entry: join(repo, 'docker/preview-daemon/src/main.ts'),
        nodeArgs: ['--import', 'tsx'],
        ...paths,
      });
  const fake = await startFakeMachinesApi({
    apiSchemaPath: FLY_MACHINES_API_FIXTURE,
    runner,
    regions: ['ams'],
    transitionMs: 5,
  });
  const tier = createFlyTier({
    client: { token: fake.token, app: fake.app, baseUrl: fake.url },
    appUrl: fake.edgeUrl,
    image: 'preview-base:bench',
    regions: ['ams'],
    daemonTokenSecret: randomBytes(24).toString('hex'),
    maxMachines: previews + 1,
    pollMs: 20,
  });
  const createMs: number[] = [];
  const applyMs: number[] = [];
  const syncMs: number[] = [];
  try {
    for (let p = 0; p < previews; p++) {
      const previewId = `bench${p}${randomBytes(4).toString('hex')}`;
      const t0 = performance.now();
      await tier.create({
        previewId,
        userId: 'bench',
        template: 'vite-vanilla',
        files: {
          'index.html': '<div id="app"></div><script type="module" src="/main.js"></script>',
          'main.js': 'document.querySelector("#app").textContent = "0";\n',
        },
      });
      createMs.push(performance.now() - t0);
      let seq = 0;
      for (let i = 0; i < edits; i++) {
        const t = performance.now();
        await tier.apply(previewId, {
          type: 'batch',
          seq: ++seq,
          ops: [
            {
              op: 'put',
              path: 'main.js',
              content: `document.querySelector("#app").textContent = "${i}";\n`,
              encoding: 'utf8',
            },
          ],
        });
        applyMs.push(performance.now() - t);
      }
      const ch = await tier.openSync(previewId);
      for (let i = 0; i < edits; i++) {
        const s = ++seq;
        const t = performance.now();
        await new Promise<void>((res) => {
          const off = ch.onFrame((f: ServerFrame) => {
            if (f.type === 'ack' && f.seq === s) {
              off();
              res();
            }
          });
          ch.send({
            type: 'batch',
            seq: s,
            ops: [{ op: 'put', path: 'note.txt', content: String(i), encoding: 'utf8' }],
          });
        });
        syncMs.push(performance.now() - t);
      }
      ch.close();
      await tier.destroy(previewId);
    }
  } finally {
    await tier.close();
    await fake.close();
  }
  const stats = (s: number[]) => ({
    p50: round1(percentile(s, 50)),
    p99: round1(percentile(s, 99)),
    n: s.length,
  });
  return {
    create_to_ready_ms: stats(createMs),
    apply_ack_ms: stats(applyMs),
    sync_send_ack_ms: stats(syncMs),
    invalid_bodies: fake.validationErrors.length,
  };
}
