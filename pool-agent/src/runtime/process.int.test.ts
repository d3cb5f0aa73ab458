import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requirePrerequisites } from '@preview/testkit';
import { describe, expect, it } from 'vitest';
import { waitReady } from '../daemon-client.ts';
import { runRuntimeContract } from './contract.case.test.ts';
import { createProcessRuntime } from './process.ts';

const repo = join(import.meta.dirname, '../../..');
const bundle = join(repo, 'docker/preview-daemon/dist/daemon.mjs');
// The bundle is a build output; build it the way the image build does.
if (!existsSync(bundle))
  execFileSync('npm', ['run', 'build', '--silent', '-w', '@preview/preview-daemon'], { cwd: repo });
// Installed templates (with node_modules), as docker/preview-base/build.sh stages them for the image.
const templatesDir = join(repo, 'docker/preview-base/.build/context/templates');
const noTemplates = existsSync(join(templatesDir, 'vite-vanilla/node_modules'))
  ? undefined
  : 'installed templates missing: run scripts/test-env.sh (docker/preview-base/build.sh stages them)';
const hasBwrap = (() => {
  try {
    execFileSync('bwrap', ['--version']);
    return true;
  } catch {
    return false;
  }
})();

runRuntimeContract({
  name: 'process (bwrap)',
  missing: hasBwrap ? noTemplates : 'bubblewrap (bwrap) is not installed: apt-get install bubblewrap',
  create: async () => createProcessRuntime({ daemonBundle: bundle, sandbox: 'bwrap', templatesDir }),
});

runRuntimeContract({
  name: 'process (not isolated)',
  missing: noTemplates,
  create: async () => createProcessRuntime({ daemonBundle: bundle, sandbox: 'none', templatesDir }),
});

describe('process runtime isolation', () => {
  it('under bwrap the daemon runs as a non-root uid with no capabilities', async () => {
    requirePrerequisites(
      !hasBwrap && 'bubblewrap (bwrap) is not installed: apt-get install bubblewrap',
      noTemplates,
    );
    const runtime = createProcessRuntime({ daemonBundle: bundle, sandbox: 'bwrap', templatesDir });
    expect(runtime.isolated).toBe(true);
    const box = await runtime.create({ template: 'vite-vanilla', daemonToken: 'x'.repeat(24) });
    try {
      await waitReady(box.upstream, { timeoutMs: 30_000 });
      // From the host: the daemon's process tree is bwrap's descendants; the node process sits in its
      // own user namespace where it is uid 1000 (uid_map "1000 <our uid> 1") with no capabilities.
      const tree = (pid: number): number[] => {
        const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number);
        return [pid, ...kids.flatMap(tree)];
      };
      const pid = runtime.pidOf(box.id);
      expect(pid).toBeGreaterThan(0);
      const node = tree(pid!).find(
        (p) =>
          readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('daemon.mjs') &&
          readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith(process.execPath),
      );
      expect(node).toBeDefined();
      const uidMap = readFileSync(`/proc/${node}/uid_map`, 'utf8').trim().split(/\s+/);
      expect(uidMap[0]).toBe('1000');
      expect(readFileSync(`/proc/${node}/status`, 'utf8')).toMatch(/^CapEff:\s+0000000000000000$/m);
    } finally {
      await runtime.remove(box.id);
    }
  });

  it('says when it is not isolated', () => {
    const warnings: string[] = [];
    const log = { warn: (m: string) => warnings.push(m) } as never;
    const runtime = createProcessRuntime({ daemonBundle: bundle, sandbox: 'none', log });
    expect(runtime.isolated).toBe(false);
    expect(warnings.join()).toMatch(/WITHOUT isolation/);
  });
});
