import { describe, expect, it } from 'vitest';
import { createMemoryPubSub } from '../infra/pubsub.ts';
import { BusMessage, SyncBus } from './bus.ts';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe('BusMessage', () => {
  it('parses each kind by its readable field names', () => {
    const batch = {
      kind: 'batch',
      owner: 'r#1',
      client: 'c1',
      seq: 3,
      ops: [{ op: 'put', path: 'a', content: 'x' }],
    };
    expect(BusMessage.parse(batch)).toEqual({
      ...batch,
      ops: [{ op: 'put', path: 'a', content: 'x', encoding: 'utf8' }],
    });
    expect(BusMessage.parse({ kind: 'batch', owner: 'r#1', client: 'c1', seq: 4, ops: null }).kind).toBe(
      'batch',
    );
    expect(
      BusMessage.parse({ kind: 'frame', replica: 'r', frame: { type: 'ack', seq: 1, stage: 'applied' } })
        .kind,
    ).toBe('frame');
    expect(BusMessage.parse({ kind: 'owner', owner: 'r#2' })).toEqual({ kind: 'owner', owner: 'r#2' });
    expect(BusMessage.parse({ kind: 'close', client: 'c', code: 1001, reason: 'gap' }).kind).toBe('close');
  });

  it('refuses the old abbreviated shape, a bad path and an unknown kind', () => {
    expect(BusMessage.safeParse({ k: 'o', r: 'r#1' }).success).toBe(false);
    expect(
      BusMessage.safeParse({
        kind: 'batch',
        owner: 'o',
        client: 'c',
        seq: 1,
        ops: [{ op: 'delete', path: '../x' }],
      }).success,
    ).toBe(false);
    expect(BusMessage.safeParse({ kind: 'nope' }).success).toBe(false);
  });
});

describe('SyncBus', () => {
  it('delivers parsed messages on sync:<previewId> and drops what does not parse', async () => {
    const pubsub = createMemoryPubSub();
    const bus = new SyncBus({ pubsub, previewId: 'p1', log: silent });
    expect(bus.channel).toBe('sync:p1');
    const got: BusMessage[] = [];
    const off = await bus.subscribe((m) => got.push(m));
    await pubsub.publish('sync:p1', { k: 'o', r: 'x' });
    bus.publish({ kind: 'owner', owner: 'r#1' });
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual([{ kind: 'owner', owner: 'r#1' }]);
    await off();
  });
});
