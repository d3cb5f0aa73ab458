import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { batchTouches, codeFor, errorText, htmlScripts, START_CONFIG, violationText } from './batches.ts';

describe('batchTouches', () => {
  const existing = new Set(['src/App.tsx', 'package.json']);
  it('lists every path, the rewrites of existing files, and dependency and start-config files', () => {
    const t = batchTouches(
      '/p',
      [
        { op: 'put', path: 'src/App.tsx', content: 'x', encoding: 'utf8' },
        { op: 'put', path: 'src/New.tsx', content: 'y', encoding: 'utf8' },
        { op: 'delete', path: 'src/Old.tsx' },
      ],
      existing,
    );
    expect(t).toEqual({
      files: ['/p/src/App.tsx', '/p/src/New.tsx', '/p/src/Old.tsx'],
      changed: ['/p/src/App.tsx'],
      pkg: false,
      startConfig: false,
    });
  });

  it('flags package.json and a renamed config on either side of a rename', () => {
    const pkg = batchTouches(
      '/p',
      [{ op: 'put', path: 'package.json', content: '{}', encoding: 'utf8' }],
      existing,
    );
    expect([pkg.pkg, pkg.changed]).toEqual([true, ['/p/package.json']]);
    const renamed = batchTouches(
      '/p',
      [{ op: 'rename', from: 'vite.config.old', to: 'vite.config.ts' }],
      existing,
    );
    expect(renamed).toEqual({
      files: ['/p/vite.config.old', '/p/vite.config.ts'],
      changed: [],
      pkg: false,
      startConfig: true,
    });
  });

  it('an index.html that keeps its scripts is no start config (a new title needs no restart); new scripts are', () => {
    const root = mkdtempSync(join(tmpdir(), 'batches-'));
    try {
      const page = (title: string, script: string) =>
        `<!doctype html><html><head><title>${title}</title></head><body><div id="app"></div>${script}</body></html>`;
      const main = '<script type="module" src="/src/main.js"></script>';
      writeFileSync(join(root, 'index.html'), page('Template', main));
      const has = new Set(['index.html']);
      const put = (content: string, encoding: 'utf8' | 'base64' = 'utf8') =>
        batchTouches(root, [{ op: 'put', path: 'index.html', content, encoding }], has).startConfig;
      expect(put(page('My app', main))).toBe(false);
      expect(put(Buffer.from(page('My app', main)).toString('base64'), 'base64')).toBe(false);
      expect(put(page('My app', '<script type="module" src="/src/main.ts"></script>'))).toBe(true);
      expect(put(page('My app', `${main}<script type="module">import 'lib';</script>`))).toBe(true);
      expect(put(page('Template', ''))).toBe(true);
      // Not on disk yet (a new file), or under another name: a start config as before.
      expect(
        batchTouches(
          root,
          [{ op: 'put', path: 'index.html', content: page('x', main), encoding: 'utf8' }],
          new Set(),
        ).startConfig,
      ).toBe(true);
      expect(htmlScripts(page('t', main))).toEqual([main]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('START_CONFIG holds root config files only', () => {
    for (const f of ['vite.config.ts', 'next.config.mjs', 'tsconfig.app.json', 'index.html', '.env.local'])
      expect([f, START_CONFIG.test(f)]).toEqual([f, true]);
    for (const f of ['src/index.html', 'src/vite.config.ts', 'README.md'])
      expect([f, START_CONFIG.test(f)]).toEqual([f, false]);
  });
});

describe('batch answers', () => {
  it('maps each rule to its wire code', () => {
    expect(
      ['file_size', 'project_size', 'batch_size', 'too_many_files', 'batch_ops', 'absolute'].map(codeFor),
    ).toEqual(['too_large', 'too_large', 'too_large', 'too_many_files', 'too_many_files', 'invalid_path']);
  });
  it('names the path and the rule, and frames errors as JSON', () => {
    const text = violationText({ path: '/etc/passwd', rule: 'absolute', message: 'must be relative' });
    expect(text).toBe('"/etc/passwd": must be relative (rule absolute)');
    expect(JSON.parse(errorText({ code: 'invalid_path', message: text, seq: 3 }))).toEqual({
      type: 'error',
      code: 'invalid_path',
      message: text,
      seq: 3,
    });
  });
});
