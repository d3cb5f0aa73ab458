import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inotifySysctlDir } from '@preview/testkit';
import { afterAll, expect, it } from 'vitest';
import { doctorContext, inotifyCheck } from './checks.ts';

const made: Array<{ remove(): Promise<void> }> = [];
afterAll(async () => {
  for (const d of made) await d.remove();
});
async function sysctls(instances: number, watches: number): Promise<string> {
  const d = await inotifySysctlDir(instances, watches);
  made.push(d);
  return d.dir;
}

it("warns when the kernel's inotify limits are too low for NODE_SLOTS previews, with the sysctls to set", async () => {
  const ctx = { ...doctorContext({ PORT: '0', NODE_SLOTS: '100' }), inotifyDir: await sysctls(128, 65_536) };
  const r = await inotifyCheck.run(ctx);
  expect(r.status).toBe('warn');
  expect(r.detail).toBe(
    'max_user_instances 128, max_user_watches 65536: too low for 100 previews (NODE_SLOTS); their file watchers would fail',
  );
  expect(r.advice?.[0]).toContain(
    'sudo sysctl -w fs.inotify.max_user_instances=8192 -w fs.inotify.max_user_watches=1048576',
  );
});

it('passes with the values docs/deploy.md sets, and with the defaults for a small node', async () => {
  const ok = await inotifyCheck.run({
    ...doctorContext({ PORT: '0', NODE_SLOTS: '100' }),
    inotifyDir: await sysctls(8192, 1_048_576),
  });
  expect(ok).toEqual({
    status: 'ok',
    detail: 'max_user_instances 8192, max_user_watches 1048576: enough for 100 previews',
  });
  const small = await inotifyCheck.run({
    ...doctorContext({ PORT: '0', NODE_SLOTS: '4' }),
    inotifyDir: await sysctls(128, 65_536),
  });
  expect(small.status).toBe('ok');
});

it('skips where there is no procfs', async () => {
  const r = await inotifyCheck.run({
    ...doctorContext({ PORT: '0' }),
    inotifyDir: join(tmpdir(), 'none-here'),
  });
  expect(r.status).toBe('skip');
});
