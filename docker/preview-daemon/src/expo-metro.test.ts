import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { expoArgs, expoEnv, metroConfigPath, metroConfigWrapper, metroTmpDir } from './expo-metro.ts';

describe('expo start as the daemon runs it', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A project with an `expo` package directory (all the helpers look for). */
  const project = () => {
    dir = mkdtempSync(join(tmpdir(), 'expo-metro-'));
    mkdirSync(join(dir, 'node_modules/expo'), { recursive: true });
    writeFileSync(join(dir, 'node_modules/expo/package.json'), '{"name":"expo"}');
    return dir;
  };

  it('runs the project’s own Expo CLI on the given port with one Metro worker', () => {
    const root = project();
    expect(expoArgs(root, 41234)).toEqual([
      join(root, 'node_modules/expo/bin/cli'),
      'start',
      '--port',
      '41234',
      '--max-workers',
      '1',
    ]);
  });

  it('drops CI (Expo’s CI mode turns the watcher off), keeps the app’s variables, and points Metro’s caches at the cache dir', () => {
    const env = expoEnv({ CI: '1', PATH: '/usr/bin', DATABASE_URL: 'postgres://x' }, '/tmp/cache');
    expect(env).not.toHaveProperty('CI');
    expect(env).toMatchObject({
      PATH: '/usr/bin',
      DATABASE_URL: 'postgres://x',
      TMPDIR: metroTmpDir('/tmp/cache'),
      EXPO_OFFLINE: '1',
      EXPO_NO_TELEMETRY: '1',
      EXPO_UNSTABLE_HEADLESS: '1',
      EXPO_NO_TYPESCRIPT_SETUP: '1',
      EXPO_OVERRIDE_METRO_CONFIG: metroConfigPath('/tmp/cache'),
    });
  });

  it('the Metro config wrapper blocks the daemon’s temp directory and nothing beside it', () => {
    const source = metroConfigWrapper(project());
    const pattern = /const sandboxTemp = new RegExp\(("[^\n]*")\);/.exec(source)?.[1];
    expect(pattern).toBeDefined();
    const re = new RegExp(JSON.parse(pattern!) as string);
    expect(re.test('/project/.preview-tmp/npm-cache/_cacache/index-v5/00')).toBe(true);
    expect(re.test('/project/.preview-tmp')).toBe(true);
    expect(re.test('C:\\project\\.preview-tmp\\x.js')).toBe(true);
    expect(re.test('/project/src/preview-tmp.ts')).toBe(false);
    expect(re.test('/project/.preview-tmpx/a.js')).toBe(false);
    expect(re.test('/project/App.tsx')).toBe(false);
  });
});
