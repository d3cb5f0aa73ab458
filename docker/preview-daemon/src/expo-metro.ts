import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import WebSocket from 'ws';
import type { Upstream } from './app-port.ts';
import type { HmrTracker } from './hmr-tracker.ts';
import { packageDir } from './load-package.ts';
import type { LogRing } from './log.ts';
import { TMP_DIR_NAME } from './validate.ts';

/**
 * Metro's transform workers. One: a sandbox gets one CPU (PREVIEW_CPUS), while Metro counts the
 * host's cores (each worker a process of ~100 MiB, and the pids limit counts their threads). With
 * one, Metro transforms in its own process.
 */
export const EXPO_MAX_WORKERS = 1;

/** Where Metro keeps its caches (its `os.tmpdir()`): the transform cache and the file map. */
export function metroTmpDir(cacheDir: string): string {
  return join(cacheDir, 'expo');
}

/** The daemon's wrapper of the project's Metro config (see {@link metroConfigWrapper}). */
export function metroConfigPath(cacheDir: string): string {
  return join(cacheDir, 'expo-config', 'metro.config.cjs');
}

/**
 * `expo start` as the daemon runs it: Expo's own CLI from the project's `expo` package, Metro on
 * `port` (every interface; the daemon proxies to it over loopback). Not `--web`: that flag only
 * opens a desktop browser; Metro serves the web target whenever react-native-web is installed.
 */
export function expoArgs(projectDir: string, port: number): string[] {
  return [
    join(packageDir(projectDir, 'expo'), 'bin/cli'),
    'start',
    '--port',
    String(port),
    '--max-workers',
    String(EXPO_MAX_WORKERS),
  ];
}

/**
 * The environment of `expo start` in a sandbox, over the app's (`base`): non-interactive without
 * `CI` (Expo's CI mode turns Metro's file watcher off, and edits must reach the page), offline (no
 * version checks, no DevTools download, no Bonjour, no dependency validation: `EXPO_OFFLINE`,
 * `EXPO_UNSTABLE_HEADLESS`), no telemetry, and no writes into the user's files (no TypeScript setup,
 * which rewrites tsconfig.json and adds expo-env.d.ts). Variable names: Expo CLI's `utils/env.ts`.
 */
export function expoEnv(base: Readonly<Record<string, string>>, cacheDir: string): Record<string, string> {
  const { CI: _ci, ...rest } = base;
  return {
    ...rest,
    NODE_ENV: 'development',
    TMPDIR: metroTmpDir(cacheDir),
    EXPO_OFFLINE: '1',
    EXPO_NO_TELEMETRY: '1',
    EXPO_UNSTABLE_HEADLESS: '1',
    EXPO_NO_TYPESCRIPT_SETUP: '1',
    EXPO_NO_GIT_STATUS: '1',
    EXPO_NO_REDIRECT_PAGE: '1',
    EXPO_OVERRIDE_METRO_CONFIG: metroConfigPath(cacheDir),
    BROWSER: 'none',
  };
}

/**
 * A Metro config (CommonJS source) that is the project's own (found and loaded by Expo's
 * `resolveMetroUserConfig`, as `expo start` would, else Expo's `getDefaultConfig`) with the daemon's
 * temp directory added to `resolver.blockList`. Metro's file map crawls and watches every directory
 * of the project (an inotify watch each), and `.preview-tmp` holds the npm cache overlay and staged
 * installs: thousands of directories that are not the app. `expo start` reads it through
 * `EXPO_OVERRIDE_METRO_CONFIG`.
 */
export function metroConfigWrapper(projectDir: string): string {
  const expo = packageDir(projectDir, 'expo');
  return `'use strict';
// Written by the preview-daemon (expo-metro.ts): the project's Metro config, plus the sandbox's rule.
const { createRequire } = require('node:module');
const expoRequire = createRequire(${JSON.stringify(join(expo, 'package.json'))});
const projectRoot = ${JSON.stringify(projectDir)};
const sandboxTemp = new RegExp(${JSON.stringify(`(^|[\\\\/])${TMP_DIR_NAME.replace('.', '\\.')}([\\\\/]|$)`)});
module.exports = (async () => {
  const { getDefaultConfig } = expoRequire('expo/metro-config');
  const { resolveMetroUserConfig } = expoRequire('@expo/metro-config/build/config/resolveMetroUserConfig');
  const base = getDefaultConfig(projectRoot);
  const found = await resolveMetroUserConfig({ projectRoot, serverRoot: projectRoot });
  let config = found.isEmpty ? base : found.config;
  if (typeof config === 'function') config = await config(base);
  const resolver = config.resolver ?? {};
  const own = resolver.blockList ?? (found.isEmpty ? base.resolver.blockList : []);
  const blockList = [...(Array.isArray(own) ? own : [own]), sandboxTemp];
  return { ...config, resolver: { ...resolver, blockList } };
})();
`;
}

/**
 * Files Metro's file map tracks (Expo's default `sourceExts` and Metro's default `assetExts`, the
 * common ones): a change of one of them moves the page's graph to a new revision.
 */
export const METRO_WATCHED = /\.(?:[cm]?[jt]sx?|json|css|png|jpe?g|gif|webp|bmp|svg|ttf|otf|mp[34]|wav)$/i;

/** Metro's HMR messages (metro/src/lib/bundleToString and HmrServer): what the daemon reads. */
interface MetroHmrMessage {
  type?: string;
  body?: {
    isInitialUpdate?: boolean;
    added?: unknown[];
    modified?: unknown[];
    deleted?: unknown[];
    message?: string;
  };
}

/**
 * The daemon as one more client of Metro: builds the web bundle once (`warm`, so the first page a
 * claimer opens is served from Metro's graph, and the image build can keep the transform cache),
 * then listens on Metro's HMR socket (`/hot`, registered with the same bundle URL a browser
 * registers) to learn when an update went out (`hmr` frames) and to log Metro's build errors.
 */
export class MetroWatcher {
  #socket: WebSocket | undefined;
  #closed = false;
  #bundleUrl: string | undefined;
  #warming: Promise<boolean> | undefined;
  // Waiting for Metro's next answer to a file change (see caughtUp).
  readonly #seen = new Set<(seen: boolean) => void>();

  constructor(
    private readonly o: {
      upstream: () => Upstream;
      alive: () => boolean;
      tracker: HmrTracker;
      log: LogRing;
      /** Longest wait for the first bundle (a cold transform cache on one CPU), in ms. */
      timeoutMs: number;
    },
  ) {}

  /**
   * Resolves once Metro has built the page's bundle (with any status: a build error is the app's,
   * shown in the browser and logged) and the HMR socket is open: `true`; `false` when `/` named no
   * bundle that could be fetched within `timeoutMs` (tried again every 500 ms: a Metro that just
   * opened its port may not serve the page yet). Never rejects; the first call does the work.
   */
  warm(): Promise<boolean> {
    this.#warming ??= this.#warm();
    return this.#warming;
  }

  async #warm(): Promise<boolean> {
    const deadline = Date.now() + this.o.timeoutMs;
    let last = '';
    while (this.o.alive() && !this.#closed) {
      try {
        const up = this.o.upstream();
        const html = await get(up, '/', 'text/html', this.o.timeoutMs);
        const src = /<script[^>]*\ssrc="([^"]+\.bundle\?[^"]*)"/.exec(html.body)?.[1];
        if (!src) throw new Error(`the page at / (status ${html.status}) names no Metro bundle`);
        const path = src.replace(/&amp;/g, '&');
        this.#bundleUrl = new URL(path, `http://${hostPort(up)}`).href;
        const bundle = await get(up, path, '*/*', this.o.timeoutMs);
        if (bundle.status !== 200) this.o.log.push(`metro: the bundle answered ${bundle.status}`);
        await this.#connect();
        return true;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    this.o.log.push(`metro warm-up: no bundle built${last ? `: ${last}` : ''}`);
    return false;
  }

  #connect(): Promise<void> {
    if (this.#closed || !this.o.alive() || !this.#bundleUrl) return Promise.resolve();
    const ws = new WebSocket(`ws://${hostPort(this.o.upstream())}/hot`);
    this.#socket = ws;
    ws.on('message', (data) => this.#onMessage(String(data)));
    ws.on('error', () => {});
    ws.on('close', () => {
      if (this.#socket === ws && !this.#closed && this.o.alive())
        setTimeout(() => void this.#connect(), 1000).unref();
    });
    return new Promise((resolve) => {
      ws.once('open', () => {
        ws.send(JSON.stringify({ type: 'register-entrypoints', entryPoints: [this.#bundleUrl] }));
        resolve();
      });
      ws.once('close', () => resolve());
    });
  }

  #onMessage(text: string) {
    let msg: MetroHmrMessage;
    try {
      msg = JSON.parse(text) as MetroHmrMessage;
    } catch {
      return;
    }
    const b = msg.body;
    if (msg.type === 'update' && b && !b.isInitialUpdate) {
      const changed = (b.added?.length ?? 0) + (b.modified?.length ?? 0) + (b.deleted?.length ?? 0);
      if (changed > 0) this.o.tracker.sent('update', true);
      this.#settle(true);
    } else if (msg.type === 'error') {
      if (b?.message) this.o.log.push(`metro: ${b.message}`);
      this.#settle(true);
    }
  }

  #settle(seen: boolean): void {
    for (const resolve of this.#seen) resolve(seen);
    this.#seen.clear();
  }

  /**
   * Resolves once Metro has taken in a file change made just before the call: its HMR server
   * answered this watcher (registered for the page's bundle, so every change of a watched file
   * moves that graph to a new revision) with an update or a build error. A page that asks for the
   * bundle after that gets the changed files. Metro learns of changes only through its file
   * watcher (inotify, then a stat, then a 30 ms batch and a 50 ms debounce); a page opened before
   * that got the old bundle and, registering after the change went out, never gets the update.
   * Resolves `false` after `timeoutMs` (a change Metro does not watch: a file type outside its
   * source and asset extensions), on close, or when the socket is not open; never rejects.
   */
  caughtUp(timeoutMs: number): Promise<boolean> {
    if (this.#closed || this.#socket?.readyState !== WebSocket.OPEN) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (seen: boolean) => {
        clearTimeout(timer);
        this.#seen.delete(onSeen);
        resolve(seen);
      };
      const onSeen = (seen: boolean) => done(seen);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#seen.add(onSeen);
    });
  }

  close(): void {
    this.#closed = true;
    this.#socket?.close();
    this.#settle(false);
  }
}

function hostPort(u: Upstream): string {
  return u.host.includes(':') ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

/** One GET to the app, its status and body (as text); rejects on a network error or after `timeoutMs`. */
function get(
  up: Upstream,
  path: string,
  accept: string,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: up.host,
        port: up.port,
        path,
        headers: { accept, host: `localhost:${up.port}` },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        // Only the page's text matters; a bundle is read to its end and dropped.
        const keep = accept === 'text/html';
        res.on('data', (c: Buffer) => {
          if (keep) chunks.push(c);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${path.split('?')[0]} took over ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Before `expo start`: Metro's caches from the image build (the template's transform cache) when
 * the project still has the template's dependencies, and the daemon's wrapper of the Metro config.
 */
export function prepareExpo(opts: {
  cacheDir: string;
  projectDir: string;
  prebuiltCacheDir?: string | undefined;
}): void {
  const tmp = metroTmpDir(opts.cacheDir);
  if (opts.prebuiltCacheDir && existsSync(opts.prebuiltCacheDir) && !existsSync(tmp))
    cpSync(opts.prebuiltCacheDir, tmp, { recursive: true });
  mkdirSync(tmp, { recursive: true });
  const config = metroConfigPath(opts.cacheDir);
  mkdirSync(dirname(config), { recursive: true });
  writeFileSync(config, metroConfigWrapper(opts.projectDir));
}
