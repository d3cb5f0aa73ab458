import { afterEach, describe, expect, it } from 'vitest';
import { buildBundlerAssets } from './assets.ts';

describe('buildBundlerAssets', () => {
  const before = process.env['NODE_ENV'];
  afterEach(() => {
    if (before === undefined) delete process.env['NODE_ENV'];
    else process.env['NODE_ENV'] = before;
  });

  // `npm start` builds the editor page with Vite first, in the same process: NODE_ENV is
  // "production" by the time the runtime host builds these (react-refresh's runtime threw).
  it('builds in a process whose NODE_ENV is production, with the React Refresh runtime', async () => {
    process.env['NODE_ENV'] = 'production';
    const { files } = await buildBundlerAssets();
    expect(files.get('vendor/react-refresh.js')).toEqual(expect.stringContaining('performReactRefresh'));
    expect(files.has('host.html')).toBe(true);
    expect(process.env['NODE_ENV']).toBe('production');
  }, 120_000);
});
