import type { PreviewSessionHandle } from '@preview/browser-runtime/react';
import { describe, expect, it } from 'vitest';
import { statusOf } from './status.tsx';

const session = (over: Partial<PreviewSessionHandle>): PreviewSessionHandle =>
  ({
    previewId: 'p1',
    state: 'ready',
    status: { phase: 'ready' },
    tier: 'docker',
    previewUrl: null,
    preview: null,
    logs: [],
    error: null,
    lastUpdate: null,
    syncState: 'open',
    files: {},
    ...over,
  }) as PreviewSessionHandle;

describe('the status bar’s view of a session', () => {
  it('takes state, tier, node, sync, the last update and the phase', () => {
    const v = statusOf(
      session({
        preview: { placement: { nodeName: 'node-a' } } as never,
        lastUpdate: { seq: 3, ms: 12.4, kind: 'update' },
        status: { phase: 'ready', message: 'on 5173' },
      }),
      [{ tier: 'docker', outcome: 'chosen', reason: 'warm' }],
      {},
    );
    expect(v).toMatchObject({
      state: 'ready',
      tier: 'docker',
      node: 'node-a',
      sync: 'open',
      updateMs: 12.4,
      updateKind: 'update',
      phase: 'ready: on 5173',
      error: null,
    });
    expect(v.reasons).toEqual([{ tier: 'docker', outcome: 'chosen', reason: 'warm' }]);
  });

  it('an error keeps its location; the page’s own action error wins and has none', () => {
    const error = {
      source: 'build' as const,
      message: 'Unexpected token',
      detail: 'src/App.jsx:3:7: ERROR: Unexpected token',
      file: 'src/App.jsx',
      line: 3,
      column: 7,
      at: 0,
    };
    expect(statusOf(session({ error }), [], {}).error).toEqual({
      text: 'Unexpected token',
      location: { file: 'src/App.jsx', line: 3, column: 7 },
    });
    expect(statusOf(session({ error }), [], { actionError: 'export database: no database' }).error).toEqual({
      text: 'export database: no database',
    });
    expect(statusOf(session({ syncState: 'idle' }), [], {}).sync).toBe('');
  });
});
