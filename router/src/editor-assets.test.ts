import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureEditorBuild } from './editor-assets.ts';

/** Strings only React's development build and the development JSX runtime carry. */
const DEVELOPMENT_MARKERS = ['jsxDEV', 'react-stack-bottom-frame', 'react_stack_bottom_frame'];

describe('ensureEditorBuild', () => {
  const before = process.env['NODE_ENV'];
  const dirs: string[] = [];
  afterEach(async () => {
    if (before === undefined) delete process.env['NODE_ENV'];
    else process.env['NODE_ENV'] = before;
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  // A process that ran a Vite dev server first (the e2e bench's raw Vite) has NODE_ENV
  // "development"; vitest runs with "test". Either made the in-process build a development one.
  it('builds a production bundle whatever NODE_ENV this process has, and leaves it as it was', async () => {
    process.env['NODE_ENV'] = 'development';
    const cacheDir = await mkdtemp(join(tmpdir(), 'editor-build-'));
    dirs.push(cacheDir);
    const build = await ensureEditorBuild({ cacheDir });
    expect(build.built).toBe(true);
    const assets = join(build.dir, 'assets');
    const scripts = (await readdir(assets)).filter((f) => f.endsWith('.js'));
    expect(scripts.length).toBeGreaterThan(0);
    const code = (await Promise.all(scripts.map((f) => readFile(join(assets, f), 'utf8')))).join('\n');
    expect(code.includes('createRoot')).toBe(true);
    expect(DEVELOPMENT_MARKERS.filter((m) => code.includes(m))).toEqual([]);
    expect(process.env['NODE_ENV']).toBe('development');
    // The next call reuses it.
    expect(await ensureEditorBuild({ cacheDir })).toEqual({ ...build, built: false });
  }, 180_000);
});
