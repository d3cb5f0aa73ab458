import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nextHmrEvent, nextHmrPath } from './next-hmr.ts';

describe('nextHmrEvent', () => {
  it.each(['built', 'sync', 'serverComponentChanges', 'clientChanges', 'serverOnlyChanges'])(
    '%s is an update (as action or type)',
    (action) => {
      expect(nextHmrEvent(JSON.stringify({ action }))).toBe('update');
      expect(nextHmrEvent(JSON.stringify({ type: action }))).toBe('update');
    },
  );
  it('reloadPage is a full reload; anything else is nothing', () => {
    expect(nextHmrEvent('{"action":"reloadPage"}')).toBe('full-reload');
    expect(nextHmrEvent('{"action":"building"}')).toBeUndefined();
    expect(nextHmrEvent('{}')).toBeUndefined();
    expect(nextHmrEvent('not json')).toBeUndefined();
  });
});

describe('nextHmrPath', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const projectWithNext = async (version?: string) => {
    const dir = await mkdtemp(join(tmpdir(), 'next-hmr-'));
    dirs.push(dir);
    if (version) {
      await mkdir(join(dir, 'node_modules/next'), { recursive: true });
      await writeFile(join(dir, 'node_modules/next/package.json'), JSON.stringify({ name: 'next', version }));
    }
    return dir;
  };

  it('is /_next/hmr from Next 16 on, /_next/webpack-hmr before', async () => {
    expect(nextHmrPath(await projectWithNext('16.0.1'))).toBe('/_next/hmr');
    expect(nextHmrPath(await projectWithNext('15.5.0'))).toBe('/_next/webpack-hmr');
  });

  it('assumes the current path when Next cannot be found', async () => {
    expect(nextHmrPath(await projectWithNext())).toBe('/_next/hmr');
  });
});
