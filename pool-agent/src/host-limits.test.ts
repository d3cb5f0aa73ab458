import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inotifySysctlDir } from '@preview/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import {
  INOTIFY_INSTANCES_PER_PREVIEW,
  inotifyAdvice,
  inotifyShortfall,
  RECOMMENDED_INOTIFY,
  readInotifyLimits,
  warnInotifyLimits,
} from './host-limits.ts';

const made: Array<{ remove(): Promise<void> }> = [];
afterAll(async () => {
  for (const d of made) await d.remove();
});
async function sysctls(instances: string, watches: string): Promise<string> {
  const d = await inotifySysctlDir(instances, watches);
  made.push(d);
  return d.dir;
}

describe('inotify limits', () => {
  it("reads procfs's values, and nothing where they are missing or not counts", async () => {
    expect(await readInotifyLimits(await sysctls('128', '65536'))).toEqual({
      maxUserInstances: 128,
      maxUserWatches: 65536,
    });
    expect(await readInotifyLimits(await sysctls('lots', '65536'))).toBeUndefined();
    expect(await readInotifyLimits(join(tmpdir(), 'no-such-inotify-dir'))).toBeUndefined();
    // This machine (Linux) has them.
    expect(await readInotifyLimits()).toMatchObject({ maxUserInstances: expect.any(Number) });
  });

  it("the kernel's default of 128 instances is too low for a node of 104 slots; the recommended values suffice", () => {
    const short = inotifyShortfall({ maxUserInstances: 128, maxUserWatches: 65_536 }, 104);
    expect(short).toEqual([
      { sysctl: 'fs.inotify.max_user_instances', current: 128, wanted: RECOMMENDED_INOTIFY.maxUserInstances },
      { sysctl: 'fs.inotify.max_user_watches', current: 65_536, wanted: RECOMMENDED_INOTIFY.maxUserWatches },
    ]);
    expect(inotifyShortfall(RECOMMENDED_INOTIFY, 104)).toEqual([]);
    // More slots than the recommended values cover: the need, not the recommendation.
    const big = inotifyShortfall(RECOMMENDED_INOTIFY, 5_000);
    expect(big[0]?.wanted).toBeGreaterThanOrEqual(5_000 * INOTIFY_INSTANCES_PER_PREVIEW);
    // A node of one preview is fine on the defaults.
    expect(inotifyShortfall({ maxUserInstances: 128, maxUserWatches: 65_536 }, 1)).toEqual([]);
  });

  it('advice names each sysctl with its value, now and at boot', () => {
    const advice = inotifyAdvice(inotifyShortfall({ maxUserInstances: 128, maxUserWatches: 8_192 }, 50));
    expect(advice[0]).toBe(
      '`sudo sysctl -w fs.inotify.max_user_instances=8192 -w fs.inotify.max_user_watches=1048576`'.replace(
        /^/,
        'raise now: ',
      ),
    );
    expect(advice[1]).toContain('/etc/sysctl.d/90-preview.conf');
  });

  it('the agent warns once with the values and the advice, and says nothing when they suffice', async () => {
    const lines: Array<{ obj: object; msg: string }> = [];
    const log = { warn: (obj: object, msg: string) => lines.push({ obj, msg }) };
    const short = await warnInotifyLimits(104, log, await sysctls('128', '1048576'));
    expect(short.map((s) => s.sysctl)).toEqual(['fs.inotify.max_user_instances']);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.msg).toMatch(/fs\.inotify\.max_user_instances=128, wants 8192/);
    expect(lines[0]?.obj).toMatchObject({
      slots: 104,
      advice: expect.arrayContaining([expect.stringContaining('sysctl -w')]),
    });
    expect(await warnInotifyLimits(104, log, await sysctls('8192', '1048576'))).toEqual([]);
    expect(lines).toHaveLength(1);
  });
});
