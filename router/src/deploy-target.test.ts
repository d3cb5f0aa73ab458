import { describe, expect, it } from 'vitest';
import { checkDeployTarget, isInternalAddress } from './deploy-target.ts';

describe('checkDeployTarget', () => {
  const resolvesTo =
    (...addresses: string[]) =>
    async () =>
      addresses.map((address) => ({ address }));

  it('classifies internal and public addresses', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.20.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      'not-an-ip',
    ])
      expect([a, isInternalAddress(a)]).toEqual([a, true]);
    for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111'])
      expect([a, isInternalAddress(a)]).toEqual([a, false]);
  });

  it('refuses a name that resolves to any internal address, and takes one that resolves to public ones', async () => {
    await expect(
      checkDeployTarget(
        'postgres://u:p@db.example.com:5432/app',
        [],
        resolvesTo('93.184.216.34', '10.0.0.5'),
      ),
    ).rejects.toMatchObject({
      code: 'target_forbidden',
      message: expect.stringMatching(/^databaseUrl: host db\.example\.com/),
    });
    // The checked address is the answer: the deploy connects to it, never resolving the name again.
    await expect(
      checkDeployTarget('postgres://u:p@db.example.com:5432/app', [], resolvesTo('93.184.216.34', '8.8.8.8')),
    ).resolves.toBe('93.184.216.34');
  });

  it('a name that resolves to a public address at the check and an internal one later is reached at the checked one', async () => {
    let calls = 0;
    const rebinding = async () => [{ address: calls++ === 0 ? '93.184.216.34' : '127.0.0.1' }];
    const address = await checkDeployTarget('postgres://u@rebind.example.com/app', [], rebinding);
    expect(address).toBe('93.184.216.34');
    expect(calls).toBe(1);
  });

  it('takes an internal host named in the allow list (case-insensitive), and names a host that does not resolve', async () => {
    await expect(
      checkDeployTarget('postgres://u@DB.internal/app', ['db.internal'], resolvesTo('10.0.0.5')),
    ).resolves.toBeUndefined();
    await expect(checkDeployTarget('postgres://u@10.0.0.5/app', ['10.0.0.5'])).resolves.toBeUndefined();
    await expect(
      checkDeployTarget('postgres://u@nowhere.invalid/app', [], async () => {
        throw new Error('ENOTFOUND');
      }),
    ).rejects.toMatchObject({ code: 'invalid_target' });
  });
});
