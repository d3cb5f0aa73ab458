/**
 * Test page script: an editor on the bundler runtime's origin, as a real one uses the package —
 * PreviewClient against the router's API, mountPreview with the router (import map, same-id
 * fallback), and the sync session applying each batch to the tab's runtime. Driven by
 * `src/runtimes/bundler/create-vite.chromium.int.test.ts` through `page.evaluate`.
 */
import type { FileOp, ProjectFiles } from '@preview/tiers';
import { PreviewClient } from '../src/client/preview-client.ts';
import type { SyncSession } from '../src/client/sync-session.ts';
import { type MountedPreview, mountPreview } from '../src/mount.ts';

let client: PreviewClient | undefined;
let mounted: MountedPreview | undefined;
let sync: SyncSession | undefined;
const statuses: string[] = [];
/** The runtime's `error` events as the editor sees them (a BuildFailedError's location included). */
const runtimeErrors: Array<{ name: string; message: string; file?: string; line?: number; column?: number }> =
  [];
/** Each status and runtime event with its time (performance.now(), ms): where a first render or an edit spends it. */
const timeline: Array<{ t: number; what: string; compiled?: number; buildMs?: number; kind?: string }> = [];

async function applyLocally(ops: FileOp[]): Promise<void> {
  for (const op of ops) {
    // After a same-id fallback there is no local runtime: the server tier applies the batch.
    const rt = mounted?.runtime;
    if (!rt) return;
    if (op.op !== 'put') throw new Error(`this test page applies puts only (got ${op.op})`);
    const content =
      op.encoding === 'base64' ? Uint8Array.from(atob(op.content), (c) => c.charCodeAt(0)) : op.content;
    try {
      await rt.writeFile(op.path, content);
    } catch (e) {
      if (mounted?.runtime === rt) throw e;
    }
  }
}

async function show(id: string, files: ProjectFiles) {
  const host = document.querySelector<HTMLElement>('#host');
  if (!client || !host) throw new Error('call connect() first');
  host.replaceChildren();
  sync?.close();
  mounted = await mountPreview(host, await client.get(id), {
    files,
    router: client,
    onStatus: (s, d) => {
      statuses.push(d ? `${s}: ${d}` : s);
      timeline.push({ t: performance.now(), what: s });
    },
  });
  const first = (mounted.runtime as { lastBuild?: { compiled: number; buildMs: number } } | undefined)
    ?.lastBuild;
  timeline.push({ t: performance.now(), what: 'mounted', ...first });
  mounted.runtime?.on('error', (e) => {
    statuses.push(`runtime error: ${e.message}`);
    const b = e as { file?: string; line?: number; column?: number };
    runtimeErrors.push({ name: e.name, message: e.message, file: b.file, line: b.line, column: b.column });
  });
  mounted.runtime?.on('updated', (u) =>
    timeline.push({
      t: performance.now(),
      what: 'updated',
      kind: u.kind,
      compiled: u.compiled,
      buildMs: u.buildMs,
    }),
  );
  sync = client.sync(id, { applyLocally });
  return { tier: mounted.session.tier, iframeTier: mounted.iframe.dataset['tier'] ?? '' };
}

/** Resolves once the preview frame's text contains `text`: ms since `since` (performance.now()). */
function frameShows(text: string, since: number, timeoutMs = 120_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const tick = () => {
      const doc = document.querySelector<HTMLIFrameElement>('#host iframe')?.contentDocument;
      if (doc?.body?.textContent?.includes(text)) return resolve(performance.now() - since);
      if (performance.now() - since > timeoutMs) return reject(new Error(`the frame never showed ${text}`));
      setTimeout(tick, 1);
    };
    tick();
  });
}

const editor = {
  /** Creates a browser-tier preview and shows it: ms from the create call until the frame shows `text` (a bench). */
  async timeFirstRender(files: ProjectFiles, text: string) {
    const t0 = performance.now();
    timeline.push({ t: t0, what: 'create' });
    await editor.create(files);
    return await frameShows(text, t0);
  },
  /** One edit through the sync session: ms from the write until the frame shows `text` (a bench). */
  async timeEdit(path: string, content: string, text: string) {
    if (!sync) throw new Error('nothing shown');
    const t0 = performance.now();
    sync.write(path, content);
    sync.flush();
    return await frameShows(text, t0);
  },
  connect(apiUrl: string, token: string) {
    client = new PreviewClient({ baseUrl: apiUrl, token });
  },
  /** Creates a browser-tier preview of `files` and shows it. */
  async create(files: ProjectFiles) {
    if (!client) throw new Error('call connect() first');
    const p = await client.create({ files, client: { bundler: true, webcontainer: false } });
    if (p.tier !== 'browser') return { id: p.id, tier: p.tier };
    return { id: p.id, ...(await show(p.id, files)) };
  },
  /** After a reload: the files come from the router. */
  async restore(id: string) {
    if (!client) throw new Error('call connect() first');
    const files = await client.files(id);
    return { files, ...(await show(id, files)) };
  },
  /** Edits as the editor makes them: through the sync session (applied here, persisted there). */
  async write(files: Record<string, string>) {
    if (!sync) throw new Error('nothing shown');
    const s = sync;
    // One write call is one batch (writes in one tick are coalesced); its `applied` ends the edit.
    const applied = new Promise<void>((resolve, reject) => {
      const off = s.on('applied', () => {
        off();
        offErr();
        resolve();
      });
      const offErr = s.on('error', (e) => {
        off();
        offErr();
        reject(e.error);
      });
    });
    for (const [path, content] of Object.entries(files)) s.write(path, content);
    await s.whenPersisted();
    await applied;
  },
  async tier(id: string) {
    return (await client?.get(id))?.tier ?? null;
  },
  statuses: () => statuses,
  runtimeErrors: () => runtimeErrors,
  timeline: () => timeline,
  /** What the frame shows now: its tier, the fallback's reason, the session's id and tier. */
  shown() {
    if (!mounted) return null;
    return {
      tier: mounted.iframe.dataset['tier'] ?? '',
      reason: mounted.iframe.dataset['fallbackReason'] ?? '',
      id: mounted.session.id,
      sessionTier: mounted.session.tier,
      src: mounted.iframe.src,
    };
  },
  /** Takes the preview down (its runtime's teardown); the iframes left in the page after it. */
  async unmount() {
    await mounted?.unmount();
    mounted = undefined;
    return [...document.querySelectorAll('iframe')].map((f) => f.src);
  },
};
(window as unknown as { __editor: unknown }).__editor = editor;
