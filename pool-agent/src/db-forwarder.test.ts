import { type AddressInfo, connect, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { rewriteDatabaseUrl, startDbForwarder } from './db-forwarder.ts';

/** Connects, writes `ping`, resolves with what comes back before the socket closes. */
function roundTrip(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write('ping'));
    let got = '';
    s.on('data', (d) => {
      got += d;
      s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

describe('startDbForwarder', () => {
  it('closes connections until its target is set, then forwards to it', async () => {
    const echo = createServer((c) => c.pipe(c));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const target = { host: '127.0.0.1', port: (echo.address() as AddressInfo).port };
    const fwd = await startDbForwarder({ listenHost: '127.0.0.1' });
    try {
      expect(fwd.target).toBeUndefined();
      expect(await roundTrip(fwd.port)).toBe('');
      fwd.setTarget(target);
      expect(fwd.target).toEqual(target);
      expect(await roundTrip(fwd.port)).toBe('ping');
      fwd.setTarget(undefined);
      expect(await roundTrip(fwd.port)).toBe('');
    } finally {
      await fwd.close();
      await new Promise((r) => echo.close(r));
    }
  });
});

describe('rewriteDatabaseUrl', () => {
  const target = { host: '127.0.0.1', port: 5432 };
  const via = { host: '172.20.0.1', port: 40000 };
  it("keeps Prisma's schema argument and every other part of the URL", () => {
    expect(
      rewriteDatabaseUrl('postgresql://p_1:s%2Fx@127.0.0.1:5432/app?schema=preview_ab', target, via),
    ).toBe('postgresql://p_1:s%2Fx@172.20.0.1:40000/app?schema=preview_ab');
  });
  it('leaves values that are not Postgres URLs alone', () => {
    expect(rewriteDatabaseUrl('http://127.0.0.1:5432/app', target, via)).toBe('http://127.0.0.1:5432/app');
    expect(rewriteDatabaseUrl('not a url', target, via)).toBe('not a url');
  });
  it('matches IPv6 targets with or without brackets', () => {
    expect(rewriteDatabaseUrl('postgres://u@[::1]:6000/db', { host: '::1', port: 6000 }, via)).toBe(
      'postgres://u@172.20.0.1:40000/db',
    );
    expect(rewriteDatabaseUrl('postgres://u@localhost:6000/db', { host: '::1', port: 6000 }, via)).toBe(
      'postgres://u@172.20.0.1:40000/db',
    );
  });
});
