import { describe, expect, it } from 'vitest';
import { TierUnavailableError } from '../errors.ts';
import { flyMachineConfig, projectFiles } from './machine-config.ts';
import { parsePreviewSpec } from './spec.ts';

describe('projectFiles', () => {
  it('writes each file base64-encoded under /project, decoding base64 entries first', () => {
    const out = projectFiles(
      {
        'a.txt': 'hé',
        'src/b.txt': { content: 'x', encoding: 'utf8' },
        'c.bin': { content: Buffer.from([0, 255]).toString('base64'), encoding: 'base64' },
      },
      100,
    );
    expect(out).toEqual([
      { guest_path: '/project/a.txt', raw_value: Buffer.from('hé').toString('base64') },
      { guest_path: '/project/src/b.txt', raw_value: Buffer.from('x').toString('base64') },
      { guest_path: '/project/c.bin', raw_value: Buffer.from([0, 255]).toString('base64') },
    ]);
  });

  it('counts decoded bytes against the limit: at it passes, over it is fly_project_too_large', () => {
    expect(projectFiles({ 'a.txt': 'abcd' }, 4)).toHaveLength(1);
    const e = (() => {
      try {
        projectFiles({ 'a.txt': 'abcd', 'b.txt': 'e' }, 4);
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(TierUnavailableError);
    expect((e as TierUnavailableError).code).toBe('fly_project_too_large');
  });
});

describe('flyMachineConfig', () => {
  const spec = parsePreviewSpec({
    previewId: 'p-0123456789',
    userId: 'u1',
    template: 'vite-react',
    files: { 'index.html': '<p>hi</p>' },
    env: { FOO: 'bar' },
  });
  const base = { image: 'img:1', daemonPort: 4100, daemonToken: 'tok', maxInlineFilesBytes: 1024 };

  it('carries the daemon env, the metadata the tier finds machines by, and a health-checked service', () => {
    const c = flyMachineConfig(spec, base);
    expect(c.image).toBe('img:1');
    expect(c.env).toEqual({
      FOO: 'bar',
      PREVIEW_TEMPLATE: 'vite-react',
      PREVIEW_DAEMON_TOKEN: 'tok',
      PREVIEW_DAEMON_PORT: '4100',
      PREVIEW_PROJECT_DIR: '/project',
    });
    expect(c.metadata).toEqual({
      preview_id: 'p-0123456789',
      user_id: 'u1',
      template: 'vite-react',
      managed_by: 'preview-router',
    });
    expect(c.files).toHaveLength(1);
    expect(c.services?.[0]).toMatchObject({ internal_port: 4100, autostart: true, autostop: false });
    expect(c.services?.[0]?.checks?.[0]).toMatchObject({ port: 4100, path: '/__preview/health' });
    expect(c.guest).toEqual({ cpu_kind: 'shared', cpus: 1, memory_mb: 1024 });
  });

  it('lets guest options override the defaults and leaves files out for an empty project', () => {
    const c = flyMachineConfig({ ...spec, files: {} }, { ...base, guest: { memory_mb: 2048 } });
    expect(c.guest).toEqual({ cpu_kind: 'shared', cpus: 1, memory_mb: 2048 });
    expect('files' in c).toBe(false);
  });
});
