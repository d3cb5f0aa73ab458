import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { hostReaches, UpstreamPicker } from './sandbox-address.ts';

describe('hostReaches', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  it('is true for a listening port and for a refused one (the other side answered)', async () => {
    server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    expect(await hostReaches('127.0.0.1', port)).toBe(true);
    await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
    expect(await hostReaches('127.0.0.1', port)).toBe(true);
  });
});

describe('UpstreamPicker', () => {
  const box = { address: '172.18.0.5', port: 17380, published: 'http://127.0.0.1:32768', running: true };

  it('auto: the address once the host reached the first running sandbox, probed once', async () => {
    const probes: string[] = [];
    const decided: string[] = [];
    const pick = new UpstreamPicker(
      'auto',
      (m) => decided.push(m),
      async (a) => {
        probes.push(a);
        return true;
      },
    );
    expect(await pick.upstream(box)).toBe('http://172.18.0.5:17380');
    expect(await pick.upstream({ ...box, address: '172.18.0.6', published: 'http://127.0.0.1:32769' })).toBe(
      'http://172.18.0.6:17380',
    );
    expect(probes).toEqual(['172.18.0.5']);
    expect(decided).toEqual(['address']);
  });

  it('a new sandbox is published until the agent knows it reaches sandboxes at their address', async () => {
    const reaching = new UpstreamPicker('auto', undefined, async () => true);
    expect(reaching.publishes).toBe(true);
    await reaching.upstream({ ...box, running: false });
    expect(reaching.publishes).toBe(true);
    await reaching.upstream(box);
    expect(reaching.publishes).toBe(false);
    const notReaching = new UpstreamPicker('auto', undefined, async () => false);
    await notReaching.upstream(box);
    expect(notReaching.publishes).toBe(true);
    expect(new UpstreamPicker('address').publishes).toBe(false);
    expect(new UpstreamPicker('published').publishes).toBe(true);
  });

  it('auto: the published port when the host does not reach the network (Docker Desktop)', async () => {
    const decided: string[] = [];
    const pick = new UpstreamPicker(
      'auto',
      (m) => decided.push(m),
      async () => false,
    );
    expect(await pick.upstream(box)).toBe('http://127.0.0.1:32768');
    expect(await pick.upstream({ ...box, published: 'http://127.0.0.1:32769' })).toBe(
      'http://127.0.0.1:32769',
    );
    expect(decided).toEqual(['published']);
  });

  it('auto: a paused or stopped sandbox decides nothing (it would not answer either way)', async () => {
    let probed = 0;
    const pick = new UpstreamPicker('auto', undefined, async () => {
      probed++;
      return true;
    });
    expect(await pick.upstream({ ...box, running: false })).toBe('http://127.0.0.1:32768');
    expect(probed).toBe(0);
    expect(await pick.upstream(box)).toBe('http://172.18.0.5:17380');
    expect(probed).toBe(1);
  });

  it('published and address are taken as set; a sandbox without an address keeps its published port', async () => {
    const never = async () => {
      throw new Error('not probed');
    };
    expect(await new UpstreamPicker('published', undefined, never).upstream(box)).toBe(
      'http://127.0.0.1:32768',
    );
    expect(await new UpstreamPicker('address', undefined, never).upstream(box)).toBe(
      'http://172.18.0.5:17380',
    );
    expect(await new UpstreamPicker('auto', undefined, never).upstream({ ...box, address: undefined })).toBe(
      'http://127.0.0.1:32768',
    );
  });
});
