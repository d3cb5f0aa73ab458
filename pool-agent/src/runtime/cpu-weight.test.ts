import { ConfigError } from '@preview/tiers';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { SandboxCpuWeight, sandboxCgroup } from './cpu-weight.ts';

describe('sandboxCgroup', () => {
  it('names the parent and the weight file for each engine layout', () => {
    expect(sandboxCgroup({ driver: 'cgroupfs', version: '1' }, 128)).toEqual({
      parent: '/previews',
      file: '/sys/fs/cgroup/cpu/previews/cpu.shares',
      value: '128',
    });
    expect(sandboxCgroup({ driver: 'systemd', version: '1' }, 256, 'pv')).toEqual({
      parent: 'pv.slice',
      file: '/sys/fs/cgroup/cpu/pv.slice/cpu.shares',
      value: '256',
    });
    // v2: the same proportion of its default weight 100 (1024 shares → 100).
    expect(sandboxCgroup({ driver: 'cgroupfs', version: '2' }, 128)).toEqual({
      parent: '/previews',
      file: '/sys/fs/cgroup/previews/cpu.weight',
      value: '13',
    });
    expect(sandboxCgroup({ driver: 'systemd', version: '2' }, 1024, 'previews', '/cg')).toEqual({
      parent: 'previews.slice',
      file: '/cg/previews.slice/cpu.weight',
      value: '100',
    });
    expect(sandboxCgroup({ driver: 'systemd', version: '2' }, 2).value).toBe('1');
    expect(sandboxCgroup({ driver: 'systemd', version: '2' }, 262_144).value).toBe('10000');
  });

  it('refuses a name a systemd slice would nest or a path could escape, and shares out of range', () => {
    const layout = { driver: 'cgroupfs', version: '1' } as const;
    for (const name of ['preview-sandboxes', '../docker', 'Previews', ''])
      expect(() => sandboxCgroup(layout, 128, name)).toThrow(
        expect.objectContaining({
          constructor: ConfigError,
          message: expect.stringContaining('SANDBOX_CGROUP'),
        }),
      );
    for (const shares of [0, 1, 262_145, 12.5])
      expect(() => sandboxCgroup(layout, shares)).toThrow(/SANDBOX_CPU_SHARES: an integer from 2 to 262144/);
  });
});

describe('SandboxCpuWeight', () => {
  const group = sandboxCgroup({ driver: 'cgroupfs', version: '1' }, 128, 'previews', '/cg');

  it('writes the weight once, however many sandboxes start at the same time', async () => {
    const writes: Array<[string, string]> = [];
    const weight = new SandboxCpuWeight(group, undefined, async (f, v) => {
      writes.push([f, v]);
    });
    expect(await Promise.all([weight.apply(), weight.apply(), weight.apply()])).toEqual([true, true, true]);
    expect(await weight.apply()).toBe(true);
    expect(writes).toEqual([['/cg/cpu/previews/cpu.shares', '128']]);
  });

  it('a host it may not write: sandboxes keep running, and the warning says what to set where', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    let tries = 0;
    const weight = new SandboxCpuWeight(group, log, async () => {
      tries++;
      throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
    });
    expect(await weight.apply()).toBe(false);
    expect(await weight.apply()).toBe(false);
    expect(tries).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ code: 'EROFS', file: '/cg/cpu/previews/cpu.shares', value: '128' });
    expect(lines[0]!['msg']).toContain('write 128 to /cg/cpu/previews/cpu.shares on the host');
  });
});
