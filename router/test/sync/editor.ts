import type { ServerFrame } from '@preview/tiers';
import { WebSocket } from 'ws';

/**
 * TEST ONLY: a bare editor socket speaking the wire protocol by hand (the router package cannot
 * depend on browser-runtime's PreviewClient). Collects every frame it receives.
 */
export async function connectRawEditor(
  url: string,
  options: { clientId?: string; lastAckedSeq?: number; hello?: boolean } = {},
) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  const frames: ServerFrame[] = [];
  const waiters = new Set<() => void>();
  let closed: { code: number; reason: string } | undefined;
  ws.on('message', (d) => {
    frames.push(JSON.parse(d.toString()) as ServerFrame);
    for (const w of waiters) w();
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    for (const w of waiters) w();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  if (options.hello !== false)
    ws.send(
      JSON.stringify({ type: 'hello', lastAckedSeq: options.lastAckedSeq ?? 0, clientId: options.clientId }),
    );
  const editor = {
    ws,
    frames,
    get closed() {
      return closed;
    },
    send(frame: unknown) {
      ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    },
    /** Waits until `pred` holds over the frames received (or the socket closes), at most `ms`. */
    waitFor(pred: (frames: ServerFrame[]) => boolean, ms = 15_000): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pred(frames)) {
            waiters.delete(check);
            clearTimeout(t);
            resolve();
          } else if (closed) {
            waiters.delete(check);
            clearTimeout(t);
            reject(new Error(`socket closed (${closed.code} ${closed.reason}) before the condition held`));
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`condition not met in ${ms} ms; frames: ${JSON.stringify(frames.slice(-5))}`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
    acked(seq: number, stage: 'applied' | 'persisted'): boolean {
      return frames.some((f) => f.type === 'ack' && f.stage === stage && f.seq >= seq);
    },
    waitClosed(ms = 15_000): Promise<{ code: number; reason: string }> {
      return new Promise((resolve, reject) => {
        if (closed) return resolve(closed);
        const t = setTimeout(() => reject(new Error('socket did not close')), ms);
        ws.once('close', (code, reason) => {
          clearTimeout(t);
          resolve({ code, reason: reason.toString() });
        });
      });
    },
    close() {
      ws.close();
    },
  };
  return editor;
}
export type RawEditor = Awaited<ReturnType<typeof connectRawEditor>>;
