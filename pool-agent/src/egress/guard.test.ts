import { describe, expect, it } from 'vitest';
import { EgressFirewall } from './firewall.ts';
import { EgressGuard } from './guard.ts';

/** A firewall whose every call fails as on a host without iptables. */
class MissingIptables extends EgressFirewall {
  override async hostPorts(): Promise<number[]> {
    throw new Error('spawn iptables-restore ENOENT');
  }
}

const runtime = {
  network: { kind: 'gateway' as const, name: 'preview-net-x', bridge: 'br-x', address: '172.31.0.1' },
};

function logger() {
  const warnings: string[] = [];
  const log = {
    warn: (_o: unknown, msg: string) => warnings.push(msg),
    info: () => {},
    error: () => {},
    debug: () => {},
  };
  return { warnings, log: log as never };
}

describe('EgressGuard when the rules cannot be set', () => {
  it('enforced: refuses to start', async () => {
    await expect(
      EgressGuard.start({
        runtime,
        mode: 'none',
        hostPorts: [],
        enforce: true,
        firewall: new MissingIptables(),
      }),
    ).rejects.toThrow(/ENOENT/);
  });

  it('not enforced: starts, and later checks (reconcile, the timer) warn once instead of throwing', async () => {
    const { warnings, log } = logger();
    const guard = await EgressGuard.start({
      runtime,
      mode: 'none',
      hostPorts: [],
      enforce: false,
      firewall: new MissingIptables(),
      log,
    });
    await expect(guard.ensure()).resolves.toBeUndefined();
    await expect(guard.ensure()).resolves.toBeUndefined();
    expect(warnings.filter((w) => w.includes('NOT filtered'))).toHaveLength(1);
    await guard.close();
  });
});
