import { BroadcastEvents, Envelope } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { BridgeReplies } from './bridge-replies.ts';

/** Stands in for supabase-js's channel (hosted Realtime): records what is broadcast. */
function recordingChannel(answer: () => Promise<string> = async () => 'ok') {
  const sent: Array<{ event: string; payload: Envelope }> = [];
  return {
    sent,
    send: async (args: { type: 'broadcast'; event: string; payload: unknown }) => {
      sent.push({ event: args.event, payload: Envelope.parse(args.payload) });
      return await answer();
    },
  };
}

const quiet = () => {
  const warnings: string[] = [];
  return { warnings, log: { info() {}, warn: (_: object, msg: string) => void warnings.push(msg) } };
};

describe('BridgeReplies', () => {
  it('broadcasts frames in call order, addressed, counting queued bytes until sent', async () => {
    const channel = recordingChannel();
    const { log } = quiet();
    let closed = false;
    const replies = new BridgeReplies({
      channel,
      bridgeId: 'bridge-p',
      previewId: 'p',
      maxMessageBytes: 4096,
      log,
      isClosed: () => closed,
    });
    const buffer = { buffered: 0 };
    replies.send('e1', { type: 'ack', seq: 1 }, buffer);
    expect(buffer.buffered).toBe(JSON.stringify({ type: 'ack', seq: 1 }).length);
    replies.resync(undefined, 'bridge started');
    await replies.drained();
    expect(buffer.buffered).toBe(0);
    expect(channel.sent.map((s) => [s.event, s.payload.from, s.payload.to, s.payload.id])).toEqual([
      [BroadcastEvents.toEditor, 'bridge-p', 'e1', 'b1'],
      [BroadcastEvents.toEditor, 'bridge-p', undefined, 'b2'],
    ]);
    closed = true;
    replies.send('e1', { type: 'ack', seq: 2 });
    await replies.drained();
    expect(channel.sent).toHaveLength(2);
  });

  it('chunks a frame larger than maxMessageBytes', async () => {
    const channel = recordingChannel();
    const replies = new BridgeReplies({
      channel,
      bridgeId: 'b',
      previewId: 'p',
      maxMessageBytes: 2048,
      log: quiet().log,
      isClosed: () => false,
    });
    replies.send('e1', { type: 'x', pad: 'y'.repeat(10_000) });
    await replies.drained();
    expect(channel.sent.length).toBeGreaterThan(1);
    expect(new Set(channel.sent.map((s) => s.payload.id))).toEqual(new Set(['b1']));
  });

  it('logs an unacknowledged or failed broadcast and goes on', async () => {
    let n = 0;
    const channel = recordingChannel(async () => {
      n++;
      if (n === 1) return 'timed out';
      if (n === 2) throw new Error('socket gone');
      return 'ok';
    });
    const { log, warnings } = quiet();
    const replies = new BridgeReplies({
      channel,
      bridgeId: 'b',
      previewId: 'p',
      maxMessageBytes: 4096,
      log,
      isClosed: () => false,
    });
    const buffer = { buffered: 0 };
    replies.send('e1', { n: 1 });
    replies.send('e1', { n: 2 }, buffer);
    replies.send('e1', { n: 3 });
    await replies.drained();
    expect(warnings).toEqual(['realtime reply not acknowledged', 'realtime reply failed']);
    expect(channel.sent).toHaveLength(3);
    expect(buffer.buffered).toBe(0);
  });
});
