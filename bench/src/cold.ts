/** `npm run bench -- cold [--runs N]`: a claim with no warm container (image present) → HTTP 200 of the user's app. */
import { randomBytes } from 'node:crypto';
import { claimAndLoad, IMAGE, startBenchAgent } from './_agent.ts';
import { percentile, round1 } from './stats.ts';

export default async function cold(args: string[]): Promise<object> {
  const i = args.indexOf('--runs');
  const runs = i >= 0 ? Number(args[i + 1]) : 7;
  const b = await startBenchAgent({
    WARM_POOL: 'vite-vanilla=0',
    NODE_SLOTS: '4',
    PREVIEW_MEMORY_MIB: '512',
  });
  const sample: number[] = [];
  try {
    for (let n = 0; n < runs + 1; n++) {
      const id = `pcold${randomBytes(5).toString('hex')}`;
      const ms = await claimAndLoad(b, id, `cold-${n}-${randomBytes(3).toString('hex')}`);
      if (n > 0) sample.push(ms); // the first run also pays for loading the image's layers into the page cache
      await b.agent.destroy(id);
    }
  } finally {
    await b.stop();
  }
  process.stderr.write(`cold: ${sample.map(Math.round).join(' ')}\n`);
  return {
    p50_ms: round1(percentile(sample, 50)),
    p95_ms: round1(percentile(sample, 95)),
    runs: sample.length,
    image: IMAGE,
  };
}
