import { createClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type RouterWithSync, startRouterWithSync } from '../../test/router-fixture.ts';
import { PreviewClient } from '../client/preview-client.ts';
import { bridgeRealtimeToHub } from './bridge.ts';
import type { RealtimeLike } from './chunks.ts';
import { startFakeRealtime } from './fake-realtime-server.ts';
import { realtimeTransport } from './realtime-transport.ts';

let r: RouterWithSync;
beforeAll(async () => {
  r = await startRouterWithSync();
});
afterAll(async () => {
  await r?.close();
});

const MAX = 16 * 1024;

describe.each(['1.0.0', '2.0.0'] as const)(
  'Supabase Realtime transport (real supabase-js, vsn %s)',
  (vsn) => {
    it('replaces the router socket: edits reach the sandbox and Postgres, acks come back, big files are chunked', async () => {
      const fake = await startFakeRealtime({ maxPayloadBytes: MAX });
      const supa = (key: string) =>
        createClient(fake.url, key, {
          realtime: { transport: WebSocket as never, vsn, heartbeatIntervalMs: 500 },
          auth: { persistSession: false, autoRefreshToken: false },
        });
      const editorSupabase = supa('anon-key');
      const routerSupabase = supa('service-key');
      const client = new PreviewClient({ baseUrl: r.baseUrl, token: r.jwt });
      const preview = await client.create({ files: { 'index.html': 'x' }, client: { webcontainer: true } });
      const bridge = await bridgeRealtimeToHub({
        realtime: routerSupabase as unknown as RealtimeLike,
        previewId: preview.id,
        userId: r.userId,
        hub: r.hub,
        maxPayloadBytes: MAX,
      });
      try {
        const sync = client.sync(preview.id, {
          transport: realtimeTransport({
            realtime: editorSupabase as unknown as RealtimeLike,
            previewId: preview.id,
            maxPayloadBytes: MAX,
          }),
        });
        const applied: number[] = [];
        sync.on('applied', (e) => applied.push(e.seq));
        const big = 'export const data = "'.concat('q"\\'.repeat(70_000), '";\n');
        sync.write('src/big.ts', big);
        sync.write('src/small.ts', 'export {}');
        await sync.whenPersisted();
        sync.rename('src/small.ts', 'src/renamed.ts');
        await sync.whenPersisted();
        expect(applied).toEqual([1, 2]);
        const files = await r.dbFiles(preview.id);
        expect(files['src/big.ts']).toBe(big);
        expect(files['src/renamed.ts']).toBe('export {}');
        expect(files).not.toHaveProperty('src/small.ts');
        // The big frame went in many chunks, none refused for size.
        expect(fake.stats.refused).toBe(0);
        expect(fake.stats.relayed).toBeGreaterThan(Math.ceil(big.length / MAX));
        expect(bridge.connections()).toBe(1);
        sync.close();
      } finally {
        await bridge.close();
        await editorSupabase.removeAllChannels();
        await routerSupabase.removeAllChannels();
        await fake.close();
      }
    });
  },
);

it('the fake refuses an unchunked broadcast over its limit, as the hosted service does', async () => {
  const fake = await startFakeRealtime({ maxPayloadBytes: MAX });
  const s = createClient(fake.url, 'k', {
    realtime: { transport: WebSocket as never, vsn: '1.0.0' },
    auth: { persistSession: false, autoRefreshToken: false },
  });
  try {
    const ch = s.channel('t', { config: { broadcast: { ack: true } } });
    await new Promise<void>((res) => ch.subscribe((st) => st === 'SUBSCRIBED' && res()));
    expect(await ch.send({ type: 'broadcast', event: 'e', payload: { t: 'x'.repeat(MAX + 1) } })).toBe(
      'error',
    );
    expect(await ch.send({ type: 'broadcast', event: 'e', payload: { t: 'small' } })).toBe('ok');
    expect(fake.stats.refused).toBe(1);
  } finally {
    await s.removeAllChannels();
    await fake.close();
  }
});
