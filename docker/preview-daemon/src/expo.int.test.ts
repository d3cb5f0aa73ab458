/**
 * The expo template's dev server (`expo start`, Metro serving the web target) in a host daemon, on
 * the dependencies docker/preview-base/build.sh installs for the image: ready means the page's
 * bundle is built; an edit is reported as `hmr` from Metro's own socket; the project's own Metro
 * config applies through the daemon's wrapper; and the daemon's temp directory is invisible to
 * Metro (neither resolvable nor watched).
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { requirePrerequisites } from '@preview/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  buildDaemon,
  type HostDaemon,
  health,
  PKG_DIR,
  SyncClient,
  spawnDaemon,
  until,
} from '../test/helpers.ts';

// build.sh stages heavy templates (expo) apart from the others.
const HEAVY_TEMPLATES = join(PKG_DIR, '../preview-base/.build/heavy');
const missing = existsSync(join(HEAVY_TEMPLATES, 'expo/node_modules/expo/package.json'))
  ? undefined
  : `installed expo template missing (${HEAVY_TEMPLATES}/expo): run scripts/test-env.sh (docker/preview-base/build.sh stages it)`;

/** The page's bundle URL (path and query) as the HTML at `/` names it. */
async function bundlePath(port: number): Promise<string> {
  const html = await (await fetch(`http://127.0.0.1:${port}/`, { headers: { accept: 'text/html' } })).text();
  const src = /<script[^>]*\ssrc="([^"]+\.bundle\?[^"]*)"/.exec(html)?.[1];
  if (!src) throw new Error(`no bundle named in ${html.slice(0, 500)}`);
  return src.replace(/&amp;/g, '&');
}

/** inotify watches held by the processes under `pid` (its own and its children's), from /proc. */
function inotifyWatches(pid: number): number {
  let n = 0;
  const pids = [pid, ...childPids(pid)];
  for (const p of pids)
    for (const fd of safeReaddir(`/proc/${p}/fdinfo`))
      n += (safeRead(`/proc/${p}/fdinfo/${fd}`).match(/^inotify /gm) ?? []).length;
  return n;
}
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const task of safeReaddir(`/proc/${pid}/task`))
    for (const c of safeRead(`/proc/${pid}/task/${task}/children`).split(/\s+/).filter(Boolean))
      out.push(Number(c), ...childPids(Number(c)));
  return out;
}
function safeReaddir(p: string): string[] {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}
function safeRead(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

describe('expo in a host daemon', () => {
  let d: HostDaemon | undefined;
  let projectDir: string | undefined;
  let sync: SyncClient | undefined;
  beforeEach(() => requirePrerequisites(missing));
  afterEach(async () => {
    sync?.close();
    await d?.stop();
    // Outside the repository: inside it, Expo would take the checkout for a monorepo root.
    if (projectDir) rmSync(projectDir, { recursive: true, force: true });
  });

  it('is ready with its bundle built, reports hmr for an edit, applies the project Metro config, and cannot see .preview-tmp', {
    timeout: 300_000,
  }, async () => {
    buildDaemon();
    projectDir = mkdtempSync('/tmp/preview-expo-');
    d = await spawnDaemon({ template: 'expo', projectDir, env: { PREVIEW_TEMPLATES_DIR: HEAVY_TEMPLATES } });
    await until(async () => (await health(d!.port)).status === 200, 240_000, 'expo ready');
    const base = `http://127.0.0.1:${d.port}`;
    // Ready means the bundle is built: it answers now, from Metro's graph.
    const first = await fetch(`${base}${await bundlePath(d.port)}`);
    expect(first.status).toBe(200);
    expect(await first.text()).toContain('Open up App.tsx to start working on your app!');

    sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync`, {
      authorization: `Bearer ${d.token}`,
    });
    const app = readFileSync(join(projectDir, 'App.tsx'), 'utf8');
    // The claim's files (seq 0) are acked once Metro has them: a page opened right after the claim
    // gets the claimer's App.tsx, not the warm sandbox's (Metro hears of files only through its
    // watcher, and a page that got the old bundle would never be sent the change).
    const claimed = app.replace('Open up App.tsx', 'Claimed App.tsx');
    expect((await sync.batch(0, [{ op: 'put', path: 'App.tsx', content: claimed }])).type).toBe('ack');
    const afterClaim = await (await fetch(`${base}${await bundlePath(d.port)}`)).text();
    expect(afterClaim).toContain('Claimed App.tsx');
    expect(afterClaim).not.toContain('Open up App.tsx');
    const edited = claimed.replace('Claimed App.tsx', 'Edited App.tsx');
    expect((await sync.batch(1, [{ op: 'put', path: 'App.tsx', content: edited }])).type).toBe('ack');
    expect(await sync.next((f) => f.type === 'hmr' && f['seq'] === 1, 60_000, 'metro hmr')).toMatchObject({
      kind: 'update',
    });

    // The daemon's temp directory: thousands of directories while an install runs. Metro watches
    // none of them, and code there does not resolve.
    const tmp = join(projectDir, '.preview-tmp', 'probe');
    const watchesBefore = inotifyWatches(d.pid);
    for (let i = 0; i < 50; i++) mkdirSync(join(tmp, `d${i}`), { recursive: true });
    writeFileSync(join(tmp, 'secret.js'), "export default 'from the temp dir';\n");
    const importsTemp = `import secret from './.preview-tmp/probe/secret';\nconsole.log(secret);\n${edited}`;
    expect((await sync.batch(2, [{ op: 'put', path: 'App.tsx', content: importsTemp }])).type).toBe('ack');
    const blocked = await until(
      async () => {
        const r = await fetch(`${base}${await bundlePath(d!.port)}`);
        return r.status !== 200 ? { status: r.status, text: await r.text() } : undefined;
      },
      60_000,
      'the bundle to fail on an import from .preview-tmp',
    );
    expect(blocked?.status).toBe(500);
    expect(blocked?.text).toMatch(/Unable to resolve|secret/);
    expect(inotifyWatches(d.pid) - watchesBefore).toBeLessThan(10);

    // The project's own metro.config.js (a custom resolution) applies: Metro restarts with it.
    const config = `const { getDefaultConfig } = require('expo/metro-config');
const config = getDefaultConfig(__dirname);
config.resolver.resolveRequest = (context, name, platform) =>
  name === 'virtual-greeting'
    ? { type: 'sourceFile', filePath: require('path').join(__dirname, 'greeting.js') }
    : context.resolveRequest(context, name, platform);
module.exports = config;
`;
    const usesConfig = `import greeting from 'virtual-greeting';\nconsole.log(greeting);\n${edited}`;
    const ack = await sync.batch(3, [
      { op: 'put', path: 'greeting.js', content: "export default 'resolved by the project config';\n" },
      { op: 'put', path: 'metro.config.js', content: config },
      { op: 'put', path: 'App.tsx', content: usesConfig },
    ]);
    expect(ack.type).toBe('ack');
    await until(async () => (await health(d!.port)).status === 200, 120_000, 'ready with the project config');
    const withConfig = await fetch(`${base}${await bundlePath(d.port)}`);
    const text = await withConfig.text();
    expect(withConfig.status, text.slice(0, 500)).toBe(200);
    expect(text).toContain('resolved by the project config');
  });
});
