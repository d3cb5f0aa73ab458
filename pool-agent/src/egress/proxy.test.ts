import { connect, createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RegistryProxy, registryHosts, startRegistryProxy } from './proxy.ts';

/** Sends `head` to the proxy and returns the first line it answers (and what follows for a tunnel). */
function ask(proxy: RegistryProxy, head: string, then?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(proxy.port, proxy.host);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      if (then && buf.includes('\r\n\r\n') && buf.startsWith('HTTP/1.1 200') && !buf.includes(then)) {
        if (!buf.includes('sent')) s.write(then);
      }
      if (!then || buf.includes(`echo:${then}`) || !buf.startsWith('HTTP/1.1 200')) {
        if (buf.includes('\r\n\r\n')) {
          s.destroy();
          resolve(buf);
        }
      }
    });
    s.on('error', reject);
    s.write(head);
  });
}

describe('registry proxy (loopback)', () => {
  let echo: Server;
  let echoPort: number;
  let proxy: RegistryProxy;
  beforeAll(async () => {
    echo = createServer((c) => c.on('data', (d) => c.write(`echo:${d}`)));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as { port: number }).port;
    proxy = await startRegistryProxy({
      listenHost: '127.0.0.1',
      allow: [{ host: '127.0.0.1', port: echoPort }],
    });
  });
  afterAll(async () => {
    await proxy.close();
    echo.close();
  });

  it('tunnels CONNECT to the allowed host and port', async () => {
    const out = await ask(proxy, `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`, 'hi');
    expect(out).toMatch(/^HTTP\/1\.1 200/);
    expect(out).toContain('echo:hi');
  });

  it('refuses any other destination with 403, for CONNECT and plain requests', async () => {
    expect(await ask(proxy, `CONNECT 127.0.0.1:${echoPort + 1} HTTP/1.1\r\n\r\n`)).toMatch(/^HTTP\/1\.1 403/);
    expect(await ask(proxy, 'CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 403/);
    expect(
      await ask(
        proxy,
        'GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n',
      ),
    ).toMatch(/^HTTP\/1\.1 403/);
    expect(await ask(proxy, 'GET /relative HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
  });

  it('derives the allowed host from the registry URL', () => {
    expect(registryHosts('https://registry.npmjs.org/')).toEqual([{ host: 'registry.npmjs.org', port: 443 }]);
    expect(registryHosts('http://10.1.2.3:4873/')).toEqual([{ host: '10.1.2.3', port: 4873 }]);
    expect(() => registryHosts('ftp://x')).toThrow(/PREVIEW_EGRESS_REGISTRY: must be http/);
  });
});
