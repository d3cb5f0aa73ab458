import { InvalidInputError, PreviewError, TimeoutError } from '../errors.ts';
import type { SyncChannel } from '../types.ts';
import type { FileBatch, ServerFrame } from '../wire.ts';

/**
 * The daemon's error codes that mean the batch itself is bad (its sender's fault, HTTP 400), from
 * docker/preview-daemon/PROTOCOL.md "Sequence numbers, acks and errors". Any other code is the
 * sandbox's failure.
 */
const BAD_BATCH = new Set([
  'invalid_path',
  'too_large',
  'too_many_files',
  'invalid_frame',
  'malformed_frame',
]);

/** A daemon `error` frame for batch `seq` as the error it stands for. */
export function batchError(seq: number, code: string, message: string): PreviewError {
  const text = `batch ${seq} rejected by the daemon: ${message}`;
  return BAD_BATCH.has(code) ? new InvalidInputError(code, text) : new PreviewError(code, text);
}

export interface AwaitAckOptions {
  signal?: AbortSignal | undefined;
  /** @default 60000 */
  timeoutMs?: number | undefined;
  /**
   * Whether an `error` frame without a `seq` (a frame the daemon could not read a seq from) is this
   * batch's answer; asked when such a frame arrives. @default never
   */
  ownsUnnumberedError?: (() => boolean) | undefined;
}

/**
 * Sends `batch` on `ch` and resolves with its `applied` ack; an error frame for the same seq rejects
 * ({@link batchError}), as do the channel closing first and `timeoutMs` passing.
 *
 * @throws InvalidInputError for a bad batch; TimeoutError (`ack_timeout`); PreviewError (`channel_closed`, the daemon's code).
 * @example
 * const ack = await sendAndAwaitAck(ch, { type: 'batch', seq: 3, ops }, { timeoutMs: 30_000 });
 */
export function sendAndAwaitAck(
  ch: SyncChannel,
  batch: FileBatch,
  o: AwaitAckOptions = {},
): Promise<ServerFrame & { type: 'ack' }> {
  return new Promise((resolve, reject) => {
    const timeoutMs = o.timeoutMs ?? 60_000;
    const finish = (fn: () => void) => {
      clearTimeout(timer);
      offFrame();
      offClose();
      o.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => finish(() => reject(o.signal?.reason));
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(new TimeoutError('ack_timeout', `no ack for batch ${batch.seq} in ${timeoutMs} ms`)),
        ),
      timeoutMs,
    );
    const offFrame = ch.onFrame((f) => {
      if (f.type === 'ack' && f.seq === batch.seq && f.stage === 'applied') finish(() => resolve(f));
      else if (
        f.type === 'error' &&
        (f.seq === batch.seq || (f.seq === undefined && o.ownsUnnumberedError?.() === true))
      )
        finish(() => reject(batchError(batch.seq, f.code, f.message)));
    });
    const offClose = ch.onClose((code) =>
      finish(() =>
        reject(new PreviewError('channel_closed', `sync channel closed (${code}) before ack ${batch.seq}`)),
      ),
    );
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      ch.send(batch);
    } catch (e) {
      finish(() => reject(e));
    }
  });
}
