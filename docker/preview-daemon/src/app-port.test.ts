import { describe, expect, it } from 'vitest';
import { connectAddress, decodeAddress } from './app-port.ts';

describe('listening addresses from /proc/net/tcp*', () => {
  it('decodes IPv4, IPv6 and IPv4-mapped addresses', () => {
    expect(decodeAddress('0100007F')).toBe('127.0.0.1');
    expect(decodeAddress('00000000000000000000000000000000')).toBe('::');
    expect(decodeAddress('0000000000000000FFFF00000100007F')).toBe('127.0.0.1');
  });

  it('connects to a wildcard socket over IPv4 loopback (a container may have no ::1)', () => {
    expect(connectAddress('::')).toBe('127.0.0.1');
    expect(connectAddress('0.0.0.0')).toBe('127.0.0.1');
    expect(connectAddress('127.0.0.1')).toBe('127.0.0.1');
    expect(connectAddress('::1')).toBe('::1');
  });
});
