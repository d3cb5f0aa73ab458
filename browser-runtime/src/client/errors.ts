import { InvalidInputError, PreviewError } from '@preview/tiers';

/** A batch the server (or the sandbox) refused; nothing of it was written. */
export class BatchRejectedError extends InvalidInputError {
  /** The client seq of the refused batch. */
  readonly seq: number;
  /** @example new BatchRejectedError('invalid_path', 'ops[0].path: must be relative', { seq: 7 }) */
  constructor(code: string, message: string, options: { seq: number; cause?: unknown }) {
    super(code, message, options);
    this.name = 'BatchRejectedError';
    this.seq = options.seq;
  }
}

/** The sync socket was closed by the server for a reason that reconnecting does not fix. */
export class SyncClosedError extends PreviewError {
  /** The WebSocket close code the server sent. */
  readonly closeCode: number;
  /** @example new SyncClosedError('forbidden', 'token expired', { closeCode: 4403 }) */
  constructor(code: string, message: string, options: { closeCode: number; cause?: unknown }) {
    super(code, message, options);
    this.name = 'SyncClosedError';
    this.closeCode = options.closeCode;
  }
}
