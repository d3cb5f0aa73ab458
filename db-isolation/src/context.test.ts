import { ConflictError, TimeoutError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { mapPgError } from './context.ts';
import { namesFor } from './names.ts';

describe('mapPgError', () => {
  const n = namesFor('0b6c3a0e-8f0e-4c1a-9a43-5c1f1d0b2e7a');
  const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });

  it('reads a lock timeout as TimeoutError and a role that still owns objects as ConflictError', () => {
    const timeout = mapPgError(pgError('55P03'), n, 'drop');
    expect(timeout).toBeInstanceOf(TimeoutError);
    expect(timeout.message).toBe(`drop ${n.previewId}: the preview's schema is locked by another operation`);
    const owns = mapPgError(pgError('2BP01'), n, 'create');
    expect(owns).toBeInstanceOf(ConflictError);
    expect(owns.message).toContain(`role ${n.role} still owns objects elsewhere`);
    expect((owns as ConflictError).cause).toMatchObject({ code: '2BP01' });
  });

  it('passes any other error through unchanged', () => {
    const e = pgError('42P01');
    expect(mapPgError(e, n, 'create')).toBe(e);
  });
});
