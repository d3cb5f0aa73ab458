/**
 * `npm run bench -- density [--previews N]`: N idle previews (daemon + Vite, the user's page loaded
 * once), then the containers' memory by cgroup accounting (usage minus inactive file cache, as
 * `docker stats` shows it).
 */
import { randomBytes } from 'node:crypto';
import { claimAndLoad, IMAGE, sleep, startBenchAgent } from './_agent.ts';
import { round1 } from './stats.ts';

export default async function density(args: string[]): Promise<object> {
  const i = args.indexOf('--previews');
  const n = i >= 0 ? Number(args[i + 1]) : 10;
  const b = await startBenchAgent({
    WARM_POOL: 'vite-vanilla=0',
    NODE_SLOTS: String(n + 1),
    PREVIEW_MEMORY_MIB: '512',
  });
  const ids: string[] = [];
  let total = 0;
  let max = 0;
  try {
    for (let k = 0; k < n; k++) {
      const id = `pdens${randomBytes(5).toString('hex')}`;
      ids.push(id);
      await claimAndLoad(b, id, `density-${k}`);
    }
    await sleep(5000); // idle
    for (const box of await b.runtime.list()) {
      const bytes = (await b.runtime.memoryBytes(box.id)) ?? 0;
      total += bytes;
      max = Math.max(max, bytes);
    }
  } finally {
    await b.stop();
  }
  const mib = total / n / 1024 / 1024;
  return { previews: n, mib_per_preview: round1(mib), max_mib: round1(max / 1024 / 1024), image: IMAGE };
}
