import { describe, expect, it } from 'vitest';
import type { ConnectionContext, SyncSocket } from '../sync/hub.ts';
import { BridgeEditors } from './bridge-editors.ts';

/** A hub that records the sockets it is handed and what each receives. */
function recordingHub() {
  const sockets: Array<{ socket: SyncSocket; ctx: ConnectionContext; got: string[]; closed: boolean }> = [];
  return {
    sockets,
    handleSocket(socket: SyncSocket, ctx: ConnectionContext) {
      const entry = { socket, ctx, got: [] as string[], closed: false };
      socket.onMessage((text) => entry.got.push(text ?? ''));
      socket.onClose(() => {
        entry.closed = true;
      });
      sockets.push(entry);
    },
  };
}

function setup(maxEditors = 2) {
  const hub = recordingHub();
  const sent: Array<{ to: string | undefined; frame: object }> = [];
  const resyncs: Array<{ to: string | undefined; why: string }> = [];
  const editors = new BridgeEditors({
    hub,
    previewId: 'p',
    userId: 'u',
    maxEditors,
    replies: {
      send: (to, frame) => void sent.push({ to, frame }),
      resync: (to, why) => void resyncs.push({ to, why }),
    },
  });
  return { hub, sent, resyncs, editors };
}

describe('BridgeEditors', () => {
  it('hands a hello to the hub on a new socket, then delivers the editor’s frames on it', () => {
    const { hub, editors } = setup();
    expect(editors.deliver('e1', 'early')).toBe(false);
    editors.connect('e1', '{"type":"hello"}');
    expect(editors.deliver('e1', '{"type":"batch"}')).toBe(true);
    expect(hub.sockets).toHaveLength(1);
    expect(hub.sockets[0]?.ctx).toEqual({ previewId: 'p', userId: 'u' });
    expect(hub.sockets[0]?.got).toEqual(['{"type":"hello"}', '{"type":"batch"}']);
    expect(editors.size).toBe(1);
  });

  it('ends the old socket when the editor says hello again', () => {
    const { hub, editors } = setup();
    editors.connect('e1', 'h1');
    editors.connect('e1', 'h2');
    expect(hub.sockets.map((s) => s.closed)).toEqual([true, false]);
    expect(editors.size).toBe(1);
  });

  it('past maxEditors drops the least recently heard editor and tells it to resync', () => {
    const { hub, editors, resyncs } = setup(2);
    editors.connect('e1', 'h');
    editors.connect('e2', 'h');
    editors.deliver('e1', 'x'); // e2 is now the stalest
    editors.connect('e3', 'h');
    expect(resyncs).toEqual([{ to: 'e2', why: 'too many editors on this preview' }]);
    expect(hub.sockets.map((s) => s.closed)).toEqual([false, true, false]);
    expect(editors.all().map((e) => e.from)).toEqual(['e1', 'e3']);
  });

  it('broadcasts what the hub sends to the editor, and a hub close becomes a resync', () => {
    const { hub, editors, sent, resyncs } = setup();
    editors.connect('e1', 'h');
    const socket = hub.sockets[0]!.socket;
    socket.send('{"type":"ack","seq":1}');
    socket.send('not json');
    expect(sent).toEqual([{ to: 'e1', frame: { type: 'ack', seq: 1 } }]);
    socket.close(4000, 'gap');
    expect(resyncs).toEqual([{ to: 'e1', why: '4000 gap' }]);
    expect(editors.size).toBe(0);
    socket.send('{"type":"ack","seq":2}');
    expect(sent).toHaveLength(1);
  });
});
