import { describe, expect, it } from 'vitest';
import { settled, templateTotals, UpProgress, warmTotals } from './progress.ts';

const log = (level: number, msg: string, fields: Record<string, unknown> = {}) =>
  JSON.stringify({ level, time: 1, pid: 1, hostname: 'h', ...fields, msg });

describe('UpProgress reads what the embedded start prints', () => {
  it('follows steps, template installs and warm pools, then the ready block (host-process runtime)', () => {
    const p = new UpProgress();
    const kinds = (line: string) => p.feed(line).map((e) => e.kind);
    expect(
      kinds(log(30, 'DATABASE_URL unset: starting embedded Postgres', { dataDir: '.data/postgres' })),
    ).toEqual(['step']);
    expect(kinds(log(30, 'migrations', { applied: [] }))).toEqual(['step']);
    expect(kinds(log(30, 'router listening', { url: 'http://127.0.0.1:8787' }))).toEqual(['step']);
    expect(kinds(log(30, 'building the preview-daemon bundle'))).toEqual(['step']);
    expect(
      kinds(
        log(30, 'embedded pool agent registered', {
          url: 'http://127.0.0.1:7070',
          runtime: 'process',
          warmTargets: { 'vite-react': 2, 'vite-vanilla': 1, expo: 0 },
        }),
      ),
    ).toEqual(['step', 'warm']);
    p.feed(
      log(30, "installing the templates' dependencies (previews of a template start once it is installed)", {
        templates: ['vite-react', 'vite-vanilla'],
      }),
    );
    expect(templateTotals(p.state)).toEqual({ done: 0, total: 2 });
    p.feed(log(30, 'template vite-react: installing dependencies (npm ci)', { template: 'vite-react' }));
    expect(templateTotals(p.state)).toEqual({ done: 0, total: 2, current: 'vite-react' });
    p.feed(log(30, 'template vite-react: added 120 packages in 9s', { template: 'vite-react', ms: 9000 }));
    p.feed(log(30, 'template vite-vanilla: dependencies already installed', { template: 'vite-vanilla' }));
    expect(p.state.templates).toEqual({ 'vite-react': 'installed', 'vite-vanilla': 'installed' });

    // The ready block (router/src/main.ts) arrives as plain lines; it completes with the editor line.
    expect(p.feed('')).toEqual([]);
    expect(p.feed('Preview router ready at http://127.0.0.1:8787')).toEqual([]);
    p.feed('  health: http://127.0.0.1:8787/readyz');
    p.feed('  local access token (user 0b7c9a52-4f0e-4d7e-9d8e-6f1f1c2b3a4d):');
    p.feed('  eyJ.token.sig');
    const ready = p.feed('  demo editor: http://127.0.0.1:8787/#token=eyJ.token.sig');
    expect(ready).toEqual([
      {
        kind: 'ready',
        ready: {
          url: 'http://127.0.0.1:8787',
          userId: '0b7c9a52-4f0e-4d7e-9d8e-6f1f1c2b3a4d',
          token: 'eyJ.token.sig',
          editorUrl: 'http://127.0.0.1:8787/#token=eyJ.token.sig',
        },
      },
    ]);

    // Warm pools: an empty target (expo=0) is not waited for.
    expect(warmTotals(p.state)).toEqual({ ready: 0, target: 3 });
    expect(settled(p.state)).toBe(false);
    p.feed(log(30, 'warm sandbox ready', { template: 'vite-react', id: 'a', ready: 1 }));
    p.feed(log(30, 'warm sandbox ready', { template: 'vite-vanilla', id: 'b', ready: 1 }));
    expect(settled(p.state)).toBe(false);
    p.feed(log(30, 'warm sandbox ready', { template: 'vite-react', id: 'c', ready: 2 }));
    expect(warmTotals(p.state)).toEqual({ ready: 3, target: 3 });
    expect(settled(p.state)).toBe(true);
    expect(p.state.runtime).toBe('process');
    expect(p.state.steps).toEqual(['embedded Postgres', 'migrations', 'router', 'daemon bundle', 'agent']);
  });

  it('a ready block without a token (Supabase auth) completes at its blank line or at the end', () => {
    const p = new UpProgress();
    p.feed('Preview router ready at http://0.0.0.0:9000');
    p.feed('  API reference: http://0.0.0.0:9000/docs');
    expect(p.feed('')).toEqual([{ kind: 'ready', ready: { url: 'http://0.0.0.0:9000' } }]);
    const q = new UpProgress();
    q.feed('Preview router ready at http://127.0.0.1:1');
    expect(q.end()).toEqual([{ kind: 'ready', ready: { url: 'http://127.0.0.1:1' } }]);
  });

  it('warnings and errors become problems; a failed install is marked failed; other lines pass through', () => {
    const p = new UpProgress();
    p.feed(log(30, "installing the templates' dependencies", { templates: ['vite-vue'] }));
    const failed = p.feed(
      log(50, 'template vite-vue: npm ci failed (exit 1): ENOTFOUND registry.npmjs.org', {
        template: 'vite-vue',
      }),
    );
    expect(failed.map((e) => e.kind)).toEqual(['templates', 'problem']);
    expect(p.state.templates['vite-vue']).toBe('failed');
    expect(
      p.feed(
        log(40, 'warm sandbox failed to start', { template: 'vite-vue', err: { message: 'no space left' } }),
      ),
    ).toEqual([{ kind: 'problem', line: 'warn: warm sandbox failed to start (no space left)' }]);
    expect(p.feed('some other output')).toEqual([{ kind: 'log', line: 'some other output' }]);
    expect(p.feed(log(30, 'request done', { path: '/readyz' }))).toEqual([]);
    expect(p.feed('{not json')).toEqual([{ kind: 'log', line: '{not json' }]);
  });
});
