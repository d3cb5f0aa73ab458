import { ConflictError, InvalidInputError, TierUnavailableError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { BatchWaiter, refusalError } from './batch-waiter.ts';
import { HTTP_CLIENT } from './client-order.ts';

const batch = { seq: 7, ops: [{ op: 'delete' as const, path: 'a' }] };

describe('BatchWaiter', () => {
  it('settles after its own applied ack and a persisted ack that covers it', async () => {
    const w = new BatchWaiter(HTTP_CLIENT, batch);
    expect(w.offer({ type: 'ack', seq: 6, stage: 'applied' })).toBe(false);
    // A persisted ack before this batch was applied does not settle it.
    expect(w.offer({ type: 'ack', seq: 9, stage: 'persisted' })).toBe(false);
    expect(w.offer({ type: 'ack', seq: 7, stage: 'applied' })).toBe(false);
    expect(w.offer({ type: 'ack', seq: 8, stage: 'persisted' })).toBe(true);
    expect(await w.done).toEqual({
      applied: { type: 'ack', seq: 7, stage: 'applied' },
      persisted: { type: 'ack', seq: 7, stage: 'persisted' },
    });
  });

  it('rejects with the refusal of its seq, keeping the code', async () => {
    const w = new BatchWaiter(HTTP_CLIENT, batch);
    w.offer({ type: 'error', code: 'invalid_path', seq: 6, message: 'other batch' });
    expect(w.settled).toBe(false);
    w.offer({ type: 'error', code: 'stale_seq', seq: 7, message: 'seq 7 is below 9' });
    await expect(w.done).rejects.toMatchObject({ code: 'stale_seq', message: 'seq 7 is below 9' });
  });

  it('maps refusal codes to error classes: input 400, seq 409, sandbox failures 503', () => {
    expect(refusalError({ code: 'invalid_path', message: 'x' })).toBeInstanceOf(InvalidInputError);
    expect(refusalError({ code: 'too_large', message: 'x' })).toBeInstanceOf(InvalidInputError);
    expect(refusalError({ code: 'duplicate_seq', message: 'x' })).toBeInstanceOf(ConflictError);
    expect(refusalError({ code: 'write_failed', message: 'x' })).toBeInstanceOf(TierUnavailableError);
  });
});
