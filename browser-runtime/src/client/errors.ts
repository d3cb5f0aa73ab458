import { InvalidInputError, PreviewError } from '@preview/tiers';

/** A batch the server (or the sandbox) refused; nothing of it was written. */
export class BatchRejectedError extends InvalidInputError {
  readonly seq: number;
  constructor(code: string, message: string, seq: number) {
    super(code, message);
    this.name = 'BatchRejectedError';
    this.seq = seq;
  }
}

/** The sync socket was closed by the server for a reason that reconnecting does not fix. */
export class SyncClosedError extends PreviewError {
  readonly closeCode: number;
  constructor(code: string, message: string, closeCode: number) {
    super(code, message);
    this.name = 'SyncClosedError';
    this.closeCode = closeCode;
  }
}
