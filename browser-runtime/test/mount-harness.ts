/** Test page for mount.test.ts: mounts previews with the real mountPreview and reports what happened. */

import type { ProjectFiles } from '@preview/tiers';
import { type MountSession, mountPreview } from '../src/mount.ts';

const w = window as unknown as Record<string, unknown>;
const log: string[] = [];
w['__log'] = log;
w['__mount'] = async (
  session: MountSession,
  opts: {
    files?: ProjectFiles;
    vendor?: Record<string, string>;
    fallbackUrl?: string;
    bootTimeoutMs?: number;
  },
) => {
  const host = document.getElementById('host')!;
  try {
    const m = await mountPreview(host, session, {
      ...(opts.files ? { files: opts.files } : {}),
      bundler: { vendor: opts.vendor ?? {} },
      webcontainer: { bootTimeoutMs: opts.bootTimeoutMs ?? 5_000 },
      onStatus: (s, d) => log.push(`${s}${d ? `:${d}` : ''}`),
      ...(opts.fallbackUrl
        ? {
            requestServerTier: async (reason) => {
              log.push(`requestServerTier:${reason.code}`);
              return { id: session.id, tier: 'docker', previewUrl: opts.fallbackUrl!, placement: null };
            },
          }
        : {}),
    });
    w['__mounted'] = m;
    return {
      ok: true,
      tier: m.session.tier,
      src: m.iframe.src,
      sandbox: m.iframe.getAttribute('sandbox'),
      referrerpolicy: m.iframe.getAttribute('referrerpolicy'),
      runtime: m.runtime?.kind ?? null,
      fallbackReason: m.iframe.dataset['fallbackReason'] ?? null,
    };
  } catch (e) {
    return { ok: false, name: (e as Error).name, message: (e as Error).message };
  }
};
w['__unmount'] = async () => {
  await (w['__mounted'] as { unmount(): Promise<void> } | undefined)?.unmount();
  return document.querySelectorAll('iframe[data-preview-id]').length;
};
