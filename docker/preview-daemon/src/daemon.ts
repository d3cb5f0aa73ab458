import { createHash, timingSafeEqual } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync, statfsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import {
  type BatchOrigin,
  ClientFrame,
  contentBytes,
  type ErrorFrame,
  type FileBatch,
  LIMITS,
  type PreviewPhase,
  parseFrame,
  pathProblem,
  type TemplateName,
} from '@preview/tiers';
import { type WebSocket, WebSocketServer } from 'ws';
import { AppEnvironment, handleEnvRequest } from './app-env.ts';
import { childDevServer, NODE_CODE } from './child-server.ts';
import type { DaemonConfig } from './config.ts';
import {
  cleanStaleInstalls,
  DEPS_FILES,
  type DepsOptions,
  depsKey,
  ensureDeps,
  matchesTemplate,
  privateNpmCache,
} from './deps.ts';
import type { DevServer, DevServerFactory } from './dev-server.ts';
import { HmrTracker } from './hmr-tracker.ts';
import { type Logger, LogRing } from './log.ts';
import { overlayNpmCache } from './npm-cache.ts';
import { OriginLog } from './origin-log.ts';
import { Manifest, scanProject } from './project-scan.ts';
import { type PathViolation, TMP_DIR_NAME, validateOps } from './validate.ts';
import { viteDevServer } from './vite-server.ts';
import { ProjectWriter } from './writer.ts';

/** Templates whose dev server runs the user's code without hot-swapping it (a Node server). */
const RESTART_ON_LOAD: ReadonlySet<TemplateName> = new Set(['express-pg']);
/**
 * Templates whose app is up once it answers `/` at all below 500: an API server need not serve a
 * page at `/`. Front-end dev servers must answer 200 (a 404 there is a missing index.html).
 */
const ANY_ANSWER: ReadonlySet<TemplateName> = new Set(['express-pg']);

/**
 * Root files a dev server reads once at start (its config, the TypeScript paths, the HTML entry,
 * the env files). One of them arriving with the claim's files, or before the dev server is ready,
 * restarts it before `ready`: otherwise its own watcher restarts it or reloads the page just after
 * a browser opened it.
 */
const START_CONFIG =
  /^(?:(?:vite|next|postcss|tailwind|babel)\.config\.[cm]?[jt]s|tsconfig(?:\.[\w-]+)?\.json|jsconfig\.json|index\.html|\.env(?:\.[\w-]+)?|\.babelrc)$/;

/** Crash restarts back off from this delay, doubling up to {@link CRASH_BACKOFF_MAX_MS}. */
const CRASH_BACKOFF_MS = 500;
const CRASH_BACKOFF_MAX_MS = 30_000;
/** An app that stayed up this long starts its backoff again from the first delay. */
const CRASH_RESET_MS = 60_000;
/** Least time between two status frames that only carry new log lines (npm's output). */
const LOG_FRAME_MS = 250;

/** How each template's dev server runs. */
export const DEV_SERVERS: Record<TemplateName, DevServerFactory> = {
  'vite-vanilla': viteDevServer,
  'vite-vanilla-ts': viteDevServer,
  'vite-react': viteDevServer,
  'vite-react-ts': viteDevServer,
  'vite-vue': viteDevServer,
  'vite-vue-ts': viteDevServer,
  next: (o) => childDevServer('next', o),
  'express-pg': (o) => childDevServer('node', o),
};

export interface Daemon {
  readonly server: Server;
  readonly port: number;
  readonly phase: PreviewPhase;
  /** Resolves when start-up work is done and the dev server's caches are complete. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

const SYNC_PATH = '/__preview/sync';
const IDLE_GC_MS = 5_000;
const INSTALLING = 'installing dependencies';

/**
 * Starts the preview-daemon: listens at once (health answers 503 until the dev server answered
 * 200), seeds the project from the template when empty, makes dependencies match package.json,
 * starts the dev server and accepts file batches on the sync socket. See PROTOCOL.md.
 *
 * @example
 * const daemon = await startDaemon(loadConfig(process.env), jsonLogger());
 */
export async function startDaemon(config: DaemonConfig, log: Logger): Promise<Daemon> {
  mkdirSync(config.projectDir, { recursive: true });
  const root = realpathSync(config.projectDir);
  const templateDir = join(config.templatesDir, config.template);
  if (config.seed) seedProject(root, templateDir, log);
  cleanStaleInstalls(root);

  const index = scanProject(root);
  const writer = new ProjectWriter(root, index);
  // Editor batches already processed, so one re-sent under a new seq is not applied twice.
  const origins = new OriginLog(`${root}/${TMP_DIR_NAME}`, log);
  const manifest = new Manifest(root);
  const ring = new LogRing();
  const clients = new Set<WebSocket>();
  const tokenDigest = digest(config.token);

  let phase: PreviewPhase = 'starting';
  let message: string | undefined = 'starting';
  // -1: nothing applied yet. seq 0 is the claimer's initial project load (applied once); the
  // router's sync hub numbers edits from 1.
  let lastSeq = -1;
  let depsHash: string | undefined;
  let dev: DevServer | undefined;
  let closing = false;
  let queued = 0;
  let queue: Promise<void> = Promise.resolve();
  let lifecycle: Promise<void> = Promise.resolve();
  // The app's environment (set once per claim).
  const appEnv = new AppEnvironment(config.appEnv);
  // Bumped whenever the running dev server is out of date and a restart is queued (the environment
  // arrived, a server project was loaded). A dev server started before the last bump is never
  // reported ready: the queued restart's is.
  let wantedGeneration = 0;
  let devGeneration = 0;
  // Restarts queued or running: a batch that finds no dev server need not queue another.
  let restartsQueued = 0;
  // npm's message while the last install failed: the app that ran before is served, never `ready`.
  let installFailure: string | undefined;
  // Crash restarts since the app was last up for a while, and the pending one.
  let crashes = 0;
  let readyAt = 0;
  let crashTimer: NodeJS.Timeout | undefined;
  let logTimer: NodeJS.Timeout | undefined;
  let cacheOverlaid = config.prebuild;

  const broadcast = (text: string) => {
    for (const c of clients) if (c.readyState === 1) c.send(text);
  };
  const statusFrame = () =>
    JSON.stringify({
      type: 'status',
      phase,
      ...(message ? { message } : {}),
      log: ring.tail(20),
      at: Date.now(),
    });
  const setPhase = (p: PreviewPhase, msg?: string) => {
    if (p === phase && msg === message) return;
    phase = p;
    message = msg;
    log.info({ phase: p, message: msg }, 'phase');
    broadcast(statusFrame());
    if (p === 'ready') {
      collectWhenIdle();
      // The first install need not wait for the npm cache overlay: make it while nothing happens.
      if (!cacheOverlaid) {
        cacheOverlaid = true;
        overlayNpmCache({ dir: privateNpmCache(root), layers: config.npmCacheLayers }).catch((e: Error) =>
          ring.push(`npm cache overlay failed: ${e.message}`),
        );
      }
    }
  };

  // An idle preview should hold as little memory as it can: once activity stops (dev-server start,
  // a burst of edits), run one full collection so V8 hands back the heap the compile burst grew.
  // Needs --expose-gc (the image's command line); a no-op without it.
  let idleTimer: NodeJS.Timeout | undefined;
  const collectWhenIdle = () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) return;
    if (idleTimer) idleTimer.refresh();
    else
      idleTimer = setTimeout(() => {
        idleTimer = undefined;
        gc();
      }, IDLE_GC_MS).unref();
  };

  /** A log line arrived: status frames carry it (throttled) while an install runs. */
  const onLog = (text: string) => {
    ring.push(text);
    if (phase !== 'installing' || logTimer) return;
    logTimer = setTimeout(() => {
      logTimer = undefined;
      broadcast(statusFrame());
    }, LOG_FRAME_MS);
  };
  const depsOptions = (): DepsOptions => ({
    projectDir: root,
    templateDir,
    env: config.childEnv,
    cacheLayers: config.npmCacheLayers,
    onOutput: onLog,
    onInstalling: () => setPhase('installing', INSTALLING),
  });

  const tracker = new HmrTracker((e) =>
    broadcast(`{"type":"hmr","seq":${e.seq},"ms":${e.ms},"kind":"${e.kind}"}`),
  );

  const extraReadDirs: string[] = [];
  if (existsSync(join(templateDir, 'node_modules')))
    extraReadDirs.push(realpathSync(join(templateDir, 'node_modules')));

  const server = createServer((req, res) => {
    browserHost(req);
    const url = req.url ?? '/';
    if (url.startsWith('/__preview/')) return control(req, res, url);
    // While an install runs or after it failed, the app that ran before keeps answering.
    if (
      dev &&
      (phase === 'ready' || phase === 'error' || phase === 'installing' || req.headers['x-preview-probe']) &&
      dev.alive
    )
      return dev.handle(req, res);
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' });
    res.end(`preview ${phase}${message ? `: ${message}` : ''}\n`);
  });
  // Slow dev-server answers (a first Next compile) must not be cut off.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIMITS.frameBytes,
    perMessageDeflate: false,
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    browserHost(req);
    const url = req.url ?? '/';
    if (url === SYNC_PATH || url.startsWith(`${SYNC_PATH}?`)) {
      if (!authorized(req, tokenDigest)) {
        socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => onSync(ws));
      return;
    }
    // Vite attaches its own listener for its HMR protocol; a child's sockets are proxied.
    const protocol = req.headers['sec-websocket-protocol'];
    if (protocol === 'vite-hmr' || protocol === 'vite-ping') return;
    if (!dev?.upgrade(req, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
  });

  function control(req: IncomingMessage, res: ServerResponse, url: string) {
    const path = url.split('?')[0];
    if (path === '/__preview/health') {
      const ok = phase === 'ready';
      return json(res, ok ? 200 : 503, { ok, phase, ...(ok || !message ? {} : { message }) });
    }
    if (path !== '/__preview/status' && path !== '/__preview/manifest' && path !== '/__preview/env')
      return json(res, 404, { error: { code: 'not_found', message: `no route ${path}` } });
    if (!authorized(req, tokenDigest))
      return json(res, 401, { error: { code: 'unauthorized', message: 'a valid bearer token is required' } });
    if (path === '/__preview/env') return handleEnvRequest(req, res, appEnv, onEnvApplied);
    if (path === '/__preview/status') {
      // App code can fill the project directory too (its size is capped by the agent): say so.
      const disk = projectDisk(root);
      if (disk && disk.freeBytes < DISK_FULL_BYTES)
        return json(res, 200, {
          phase: 'error',
          message: diskFullMessage(root),
          disk,
          log: ring.tail(100),
          lastSeq: Math.max(lastSeq, 0),
        });
      return json(res, 200, {
        phase,
        ...(message ? { message } : {}),
        ...(disk ? { disk } : {}),
        log: ring.tail(100),
        lastSeq: Math.max(lastSeq, 0),
      });
    }
    manifest.compute().then(
      (files) => json(res, 200, { files }),
      (e: Error) => json(res, 500, { error: { code: 'internal', message: e.message } }),
    );
  }

  function onSync(ws: WebSocket) {
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
    ws.on('error', () => {});
    ws.send(statusFrame());
    ws.on('message', (data, isBinary) => {
      const t0 = performance.now();
      if (isBinary) return ws.send(errorText({ code: 'malformed_frame', message: 'frames are JSON text' }));
      const text = String(data);
      const parsed = parseFrame(ClientFrame, text);
      if (!parsed.ok) return ws.send(JSON.stringify(describeBadFrame(text, parsed.error)));
      const frame = parsed.value;
      if (frame.type === 'batch') return enqueue(ws, frame, t0);
      if (frame.type === 'ping')
        return ws.send(JSON.stringify({ type: 'pong', ...(frame.t ? { t: frame.t } : {}) }));
      if (frame.type === 'hello') {
        // Tell a reconnecting client where this daemon is, so it can replay what is missing.
        if (lastSeq > 0) ws.send(ackText(lastSeq));
        ws.send(statusFrame());
      }
    });
  }

  function enqueue(ws: WebSocket, batch: FileBatch, t0: number) {
    // The edit path: a small batch with nothing ahead of it is validated, written and acked in this tick.
    if (queued === 0 && writer.isSmall(batch.ops)) {
      applyBatch(ws, batch, t0, true);
      return;
    }
    queued++;
    queue = queue
      .then(() => applyBatch(ws, batch, t0, false))
      .catch(() => {})
      .finally(() => {
        queued--;
      });
  }

  function applyBatch(ws: WebSocket, batch: FileBatch, t0: number, sync: true): void;
  function applyBatch(ws: WebSocket, batch: FileBatch, t0: number, sync: false): Promise<void>;
  function applyBatch(ws: WebSocket, batch: FileBatch, t0: number, sync: boolean): void | Promise<void> {
    const { seq, ops, origin } = batch;
    const before = origin && origins.seen(origin);
    if (seq <= lastSeq && !before) {
      // An editor batch this sandbox never applied, behind a newer one: sent by a sync owner that
      // has since been replaced (its bytes arrived late). Its place in the order is gone; it is not
      // applied and not acked (an ack would say it is on disk). The current owner sends it again.
      if (origin) return;
      ws.send(ackText(seq)); // replay: already on disk
      return;
    }
    if (before) {
      // The same editor batch again, under a new seq: answer as the first time, write nothing.
      if (!before.applied) return refuse(ws, seq, origin, before.code, before.message);
      if (seq > lastSeq) lastSeq = seq;
      ws.send(ackText(seq));
      return;
    }
    let violation: PathViolation | undefined;
    try {
      violation = validateOps(root, ops, index, config);
    } catch (e) {
      return refuse(ws, seq, origin, 'write_failed', (e as Error).message);
    }
    if (violation) return refuse(ws, seq, origin, codeFor(violation.rule), violationText(violation));
    const files: string[] = [];
    // Rewrites of files that already exist: announced to the dev server right after the write.
    const changed: string[] = [];
    let pkg = false;
    let startConfig = false;
    for (const op of ops) {
      if (op.op === 'rename') {
        files.push(`${root}/${op.from}`, `${root}/${op.to}`);
        if (DEPS_FILES.has(op.from) || DEPS_FILES.has(op.to)) pkg = true;
        if (START_CONFIG.test(op.from) || START_CONFIG.test(op.to)) startConfig = true;
      } else {
        const abs = `${root}/${op.path}`;
        files.push(abs);
        if (op.op === 'put' && index.files.has(op.path)) changed.push(abs);
        if (DEPS_FILES.has(op.path)) pkg = true;
        if (START_CONFIG.test(op.path)) startConfig = true;
      }
    }
    // The claim's files (seq 0) or files that arrive before the dev server is up: a dev server
    // that hot-swaps code restarts with their configuration before it is reported ready.
    const reconfigure =
      startConfig && (seq === 0 || phase !== 'ready') && !RESTART_ON_LOAD.has(config.template);
    // Registered before the write: the watcher may fire before the ack goes out.
    tracker.applied(seq, t0, files);
    const done = () => {
      lastSeq = seq;
      if (origin) origins.record(origin);
      if (changed.length > 0 && phase === 'ready' && !pkg && !reconfigure) dev?.notifyChanged?.(changed);
      ws.send(ackText(seq));
      // A Node server that is not serving yet (or not any more) runs these files only if it starts
      // after them; a ready one reloads through notifyChanged.
      const stale =
        RESTART_ON_LOAD.has(config.template) &&
        (phase !== 'ready' || seq === 0) &&
        files.some((f) => NODE_CODE.test(f));
      afterApply(pkg, stale, reconfigure);
      collectWhenIdle();
    };
    const failed = (e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT')
        return refuse(ws, seq, origin, 'disk_full', `batch ${seq}: ${diskFullMessage(root)}`);
      refuse(ws, seq, origin, 'write_failed', `batch ${seq}: ${(e as Error).message}`);
    };
    if (sync) {
      try {
        writer.applySync(ops);
      } catch (e) {
        return failed(e);
      }
      return done();
    }
    return writer.apply(ops).then(done, failed);
  }

  /** Answers a batch that is not applied; an editor batch is answered the same way if it comes again. */
  function refuse(
    ws: WebSocket,
    seq: number,
    origin: BatchOrigin | undefined,
    code: string,
    message: string,
  ) {
    if (origin) origins.record(origin, { code, message });
    ws.send(errorText({ code, message, seq }));
  }

  /**
   * `stale`: the batch changed code of a dev server that does not hot-swap it, and that server was
   * not ready to reload it (it is starting, or failed), or this is the claimer's initial load.
   */
  function afterApply(pkgTouched: boolean, stale: boolean, reconfigure: boolean) {
    if (closing) return;
    if (pkgTouched && depsKey(root) !== depsHash) {
      // Not ready from this tick on, so nobody who saw the ack reads a stale 200 from health.
      setPhase('installing', INSTALLING);
      wantedGeneration++;
      lifecycle = lifecycle.then(() => reinstall());
      return;
    }
    // Not ready until a server that runs these files answers: after a claim, the template's server
    // still answering is not the user's app being up.
    if (stale) return queueRestart('project changed', 'loading the project', true);
    if (reconfigure) return queueRestart('configuration changed', 'loading the project configuration', false);
    if (phase === 'installing') return;
    if (!dev?.alive && restartsQueued === 0)
      lifecycle = lifecycle.then(() => restart('dev server was not running'));
    else if (phase !== 'ready') lifecycle = lifecycle.then(() => checkReady());
  }

  /**
   * The claim's environment arrived: not ready from this tick on (the caller sees that before its
   * answer), and the dev server restarts with it. The app never answers without it afterwards.
   */
  function onEnvApplied() {
    queueRestart('environment set', 'applying the environment', false);
  }

  /**
   * Not ready from this tick on; the dev server restarts, and only the restarted one reports ready.
   * `reload`: new code only (same environment), so a dev server that can swap its process in place
   * (`DevServer.reload`) does that instead of a full stop and start.
   */
  function queueRestart(reason: string, message: string, reload: boolean) {
    wantedGeneration++;
    if (phase !== 'installing') setPhase('starting', message);
    restartsQueued++;
    lifecycle = lifecycle.then(async () => {
      try {
        // An earlier queued restart may have started its dev server after this bump: it is current.
        if (devGeneration === wantedGeneration && dev?.alive) return;
        const d = dev;
        if (reload && d?.alive && d.reload && !closing) {
          log.info({ reason }, 'reloading the app');
          const generation = wantedGeneration;
          await d.reload();
          if (dev !== d) return;
          devGeneration = generation;
          await checkReady();
        } else await restart(reason);
      } finally {
        restartsQueued--;
      }
    });
  }

  /**
   * The dependencies changed: install them while the running app keeps answering, then restart the
   * dev server on them. A failed install leaves the app as it was, and the preview `error` with npm's
   * message until package.json changes again.
   */
  async function reinstall() {
    if (closing) return;
    try {
      depsHash = await ensureDeps(depsOptions());
      installFailure = undefined;
    } catch (e) {
      installFailure = (e as Error).message;
      ring.push(installFailure);
      setPhase('error', installFailure);
      return;
    }
    await restart('dependencies changed');
  }

  /** The app stopped by itself: say so, and start it again after a growing delay. */
  function onCrash(d: DevServer, reason: string) {
    if (closing || dev !== d) return;
    if (readyAt && Date.now() - readyAt > CRASH_RESET_MS) crashes = 0;
    readyAt = 0;
    crashes++;
    const delay = Math.min(CRASH_BACKOFF_MS * 2 ** (crashes - 1), CRASH_BACKOFF_MAX_MS);
    setPhase('error', `${reason}\nrestarting it in ${delay / 1000} s (attempt ${crashes})`);
    clearTimeout(crashTimer);
    crashTimer = setTimeout(() => {
      if (closing || dev !== d || d.alive) return;
      setPhase('starting', `restarting the app after it stopped (attempt ${crashes})`);
      lifecycle = lifecycle.then(() => restart('the app stopped'));
    }, delay);
    crashTimer.unref();
  }

  async function restart(reason: string) {
    if (closing) return;
    clearTimeout(crashTimer);
    log.info({ reason }, 'restarting dev server');
    const old = dev;
    dev = undefined;
    await old?.close().catch(() => {});
    await boot();
    if (phase === 'ready') tracker.sent('restart', true);
  }

  async function boot() {
    try {
      try {
        depsHash = await ensureDeps(depsOptions());
        installFailure = undefined;
      } catch (e) {
        installFailure = (e as Error).message;
        throw e;
      }
      if (closing) return;
      setPhase('starting', 'starting the dev server');
      devGeneration = wantedGeneration;
      const d = DEV_SERVERS[config.template]({
        projectDir: root,
        cacheDir: config.cacheDir,
        prebuiltCacheDir: matchesTemplate(root, templateDir)
          ? join(config.prebuiltDir, config.template)
          : undefined,
        httpServer: server,
        daemonPort: () => (server.address() as AddressInfo).port,
        extraReadDirs,
        env: { ...config.childEnv, ...appEnv.values },
        appEnv: appEnv.values,
        tracker,
        log: ring,
        readyTimeoutMs: config.appReadyTimeoutMs,
        onExit: (reason) => onCrash(d, reason),
      });
      dev = d;
      await d.start();
      await checkReady();
    } catch (e) {
      ring.push(String((e as Error).stack ?? e));
      setPhase('error', (e as Error).message);
    }
  }

  async function checkReady() {
    const d = dev;
    if (!d || closing) return;
    // Short first waits: a node server answers within a few probes, and a claim waits on this.
    let wait = 20;
    for (;;) {
      const code = await d.probe();
      if (dev !== d || closing) return;
      // Started before the environment or the project arrived: the queued restart reports ready.
      const up = code === 200 || (ANY_ANSWER.has(config.template) && code > 200 && code < 500);
      if (up && devGeneration !== wantedGeneration) return;
      if (up && installFailure) return setPhase('error', installFailure);
      if (up) {
        readyAt = Date.now();
        return setPhase('ready');
      }
      if (code !== 0) return setPhase('error', `the dev server answered ${code} on /`);
      if (!d.alive) return;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 200);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, template: config.template, projectDir: root }, 'listening');
  lifecycle = lifecycle.then(boot);

  return {
    server,
    port,
    settled: async () => {
      await lifecycle;
      await dev?.settle?.();
    },
    get phase() {
      return phase;
    },
    async close() {
      closing = true;
      clearTimeout(crashTimer);
      clearTimeout(logTimer);
      for (const c of clients) c.terminate();
      wss.close();
      await lifecycle.catch(() => {});
      await dev?.close().catch(() => {});
      origins.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function seedProject(root: string, templateDir: string, log: Logger) {
  const present = readdirSync(root).filter((n) => n !== 'node_modules' && n !== '.preview-tmp');
  if (present.length > 0 || !existsSync(templateDir)) return;
  cpSync(templateDir, root, {
    recursive: true,
    filter: (src) => !/[/\\](node_modules|dist|\.next)$/.test(src),
  });
  log.info({ templateDir }, 'seeded project from template');
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function authorized(req: IncomingMessage, tokenDigest: Buffer): boolean {
  let token: string | undefined;
  const h = req.headers.authorization;
  if (h?.startsWith('Bearer ')) token = h.slice(7);
  else {
    const q = (req.url ?? '').indexOf('?');
    if (q >= 0) token = new URLSearchParams(req.url!.slice(q + 1)).get('token') ?? undefined;
  }
  // Compare digests: equal length, constant time, no length oracle.
  return token !== undefined && timingSafeEqual(digest(token), tokenDigest);
}

function json(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

function ackText(seq: number): string {
  return `{"type":"ack","seq":${seq},"stage":"applied"}`;
}

/** Below this much free space (bytes) the project directory counts as full. */
const DISK_FULL_BYTES = 1024 * 1024;

/**
 * The file system holding the project directory: its size and what an unprivileged writer may
 * still use, in bytes; undefined when it cannot be read.
 */
function projectDisk(root: string): { totalBytes: number; freeBytes: number } | undefined {
  try {
    const s = statfsSync(root);
    return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
  } catch {
    return undefined;
  }
}

function diskFullMessage(root: string): string {
  const d = projectDisk(root);
  const size = d ? ` (${Math.round(d.totalBytes / 1048576)} MiB)` : '';
  return `the project directory is full${size}: writes fail with ENOSPC; delete files or ask for a larger PREVIEW_DISK_MB`;
}

function errorText(e: Omit<ErrorFrame, 'type'>): string {
  return JSON.stringify({ type: 'error', ...e });
}

function codeFor(rule: string): string {
  if (rule === 'file_size' || rule === 'project_size' || rule === 'batch_size') return 'too_large';
  if (rule === 'too_many_files' || rule === 'batch_ops') return 'too_many_files';
  return 'invalid_path';
}

function violationText(v: PathViolation): string {
  return `${JSON.stringify(v.path)}: ${v.message} (rule ${v.rule})`;
}

/**
 * A frame the schema refused. For batches, name the offending path and rule (the schema's own
 * message names only the field), so the editor can show which file was refused and why.
 */
function describeBadFrame(text: string, fallback: ErrorFrame): ErrorFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fallback;
  }
  const b = raw as { type?: unknown; ops?: unknown };
  if (b?.type !== 'batch' || !Array.isArray(b.ops)) return fallback;
  const seq = fallback.seq;
  const withSeq = (code: string, v: PathViolation): ErrorFrame => ({
    type: 'error',
    code,
    message: violationText(v),
    ...(seq !== undefined ? { seq } : {}),
  });
  if (b.ops.length > LIMITS.batchOps)
    return withSeq('too_many_files', {
      path: '(batch)',
      rule: 'batch_ops',
      message: `a batch holds at most ${LIMITS.batchOps} operations, got ${b.ops.length}`,
    });
  let total = 0;
  for (const op of b.ops as Array<Record<string, unknown>>) {
    for (const key of ['path', 'from', 'to']) {
      const p = op?.[key];
      if (typeof p !== 'string') continue;
      const problem = pathProblem(p);
      if (problem) return withSeq('invalid_path', { path: p, ...problem });
    }
    if (op?.op === 'put' && typeof op.content === 'string') {
      const n = contentBytes({ content: op.content, encoding: op.encoding === 'base64' ? 'base64' : 'utf8' });
      total += n;
      if (n > LIMITS.fileBytes)
        return withSeq('too_large', {
          path: String(op.path),
          rule: 'file_size',
          message: `file too large: ${n} bytes > ${LIMITS.fileBytes}`,
        });
    }
  }
  if (total > LIMITS.batchBytes)
    return withSeq('too_large', {
      path: '(batch)',
      rule: 'batch_size',
      message: `batch too large: ${total} bytes > ${LIMITS.batchBytes}`,
    });
  return fallback;
}

/**
 * The app sees the Host the browser sent: the router's proxy names it in `X-Forwarded-Host`, and a
 * hop that had to change `Host` (Fly's edge routes by it) leaves it there. Only the router and the
 * agent reach the daemon's port, so the header is theirs.
 */
function browserHost(req: IncomingMessage): void {
  const fwd = req.headers['x-forwarded-host'];
  const host = Array.isArray(fwd) ? fwd[0] : fwd;
  if (host && !host.includes(',')) req.headers.host = host;
}
