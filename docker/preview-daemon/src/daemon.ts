import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { LIMITS, type PreviewPhase, type TemplateName } from '@preview/tiers';
import { type WebSocket, WebSocketServer } from 'ws';
import { AppEnvironment } from './app-env.ts';
import { BatchApplier } from './batches.ts';
import { childDevServer } from './child-server.ts';
import type { DaemonConfig } from './config.ts';
import { authorized, type ControlContext, digest, handleControl } from './control.ts';
import {
  cleanStaleInstalls,
  type DepsOptions,
  depsKey,
  ensureDeps,
  installNeeded,
  matchesTemplate,
  privateNpmCache,
} from './deps.ts';
import type { DevServer, DevServerFactory } from './dev-server.ts';
import { HmrTracker } from './hmr-tracker.ts';
import { IdleCollector } from './idle-gc.ts';
import { DevLifecycle, INSTALLING } from './lifecycle.ts';
import { type Logger, LogRing } from './log.ts';
import { overlayNpmCache } from './npm-cache.ts';
import { OriginLog } from './origin-log.ts';
import { Manifest, scanProject } from './project-scan.ts';
import { ScriptRunner } from './scripts.ts';
import { DaemonStatus } from './status.ts';
import { serveSyncSocket } from './sync-socket.ts';
import { TMP_DIR_NAME } from './validate.ts';
import { answerWithReload, viteDevServer } from './vite-server.ts';
import { ProjectWriter } from './writer.ts';

/**
 * Templates whose app is up once it answers `/` at all below 500: an API server need not serve a
 * page at `/`. Front-end dev servers must answer 200 (a 404 there is a missing index.html).
 */
const ANY_ANSWER: ReadonlySet<TemplateName> = new Set(['express-pg']);

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
  expo: (o) => childDevServer('expo', o),
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

/**
 * Starts the preview-daemon: listens at once (health answers 503 until the dev server answered
 * 200), seeds the project from the template when empty, makes dependencies match package.json,
 * starts the dev server and accepts file batches on the sync socket. See PROTOCOL.md.
 *
 * The parts, each in its own module: the phase and its broadcast (`status.ts`), the control routes
 * (`control.ts`), the sync socket (`sync-socket.ts`) and the batches it carries (`batches.ts`), the
 * dev server's life (`lifecycle.ts`). This function wires them to one HTTP server.
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
  // The app's environment (set once per claim).
  const appEnv = new AppEnvironment(config.appEnv);
  const idle = new IdleCollector();
  let cacheOverlaid = config.prebuild;
  const status = new DaemonStatus<WebSocket>({
    ring: new LogRing(),
    log,
    onReady: () => {
      idle.activity();
      // The first install need not wait for the npm cache overlay: make it while nothing happens.
      if (!cacheOverlaid) {
        cacheOverlaid = true;
        overlayNpmCache({ dir: privateNpmCache(root), layers: config.npmCacheLayers }).catch((e: Error) =>
          status.ring.push(`npm cache overlay failed: ${e.message}`),
        );
      }
    },
  });
  const tracker = new HmrTracker((e) =>
    status.broadcast(`{"type":"hmr","seq":${e.seq},"ms":${e.ms},"kind":"${e.kind}"}`),
  );
  const extraReadDirs: string[] = [];
  if (existsSync(join(templateDir, 'node_modules')))
    extraReadDirs.push(realpathSync(join(templateDir, 'node_modules')));

  const depsOptions = (): DepsOptions => ({
    projectDir: root,
    templateDir,
    env: config.childEnv,
    cacheLayers: config.npmCacheLayers,
    onOutput: status.onLog,
    onInstalling: () => status.set('installing', INSTALLING),
  });
  const lifecycle: DevLifecycle = new DevLifecycle({
    status,
    log,
    tracker,
    anyAnswer: ANY_ANSWER.has(config.template),
    ensureDeps: () => ensureDeps(depsOptions()),
    depsKey: () => depsKey(root),
    installNeeded: () => installNeeded({ projectDir: root, templateDir }),
    createDevServer: (onExit) =>
      DEV_SERVERS[config.template]({
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
        log: status.ring,
        readyTimeoutMs: config.appReadyTimeoutMs,
        onExit,
      }),
  });
  const origins = new OriginLog(`${root}/${TMP_DIR_NAME}`, log);
  const batches = new BatchApplier({
    root,
    template: config.template,
    limits: config,
    index,
    writer: new ProjectWriter(root, index),
    origins,
    tracker,
    status,
    lifecycle,
    onApplied: () => idle.activity(),
  });
  const control: ControlContext = {
    root,
    tokenDigest: digest(config.token),
    status,
    lastSeq: () => batches.lastSeq,
    manifest: new Manifest(root),
    appEnv,
    onEnvApplied: () => lifecycle.onEnvApplied(),
    scripts: new ScriptRunner({ root, env: () => ({ ...config.childEnv, ...appEnv.values }) }),
  };

  const server = createServer((req, res) => {
    browserHost(req);
    const url = req.url ?? '/';
    if (url.startsWith('/__preview/')) return handleControl(control, req, res, url);
    serveApp(req, res, status, lifecycle.dev);
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
      if (!authorized(req, control.tokenDigest)) {
        socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => serveSyncSocket(ws, status, batches));
      return;
    }
    // A child's sockets are proxied; Vite's HMR sockets go to the running Vite server's listener,
    // unless the page is stale (see vite-server.ts).
    if (lifecycle.dev?.upgrade(req, socket, head)) return;
    const protocol = req.headers['sec-websocket-protocol'];
    // Between two dev servers (a restart): a page's HMR socket is told to reload (into the
    // not-ready page, then the next server's app); a restart poll's ping is refused, so it asks again.
    if (protocol === 'vite-hmr') answerWithReload(req, socket, head);
    else if (protocol === 'vite-ping')
      socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
    else socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, template: config.template, projectDir: root }, 'listening');
  lifecycle.start();

  return {
    server,
    port,
    settled: () => lifecycle.settled(),
    get phase() {
      return status.phase;
    },
    async close() {
      const stopped = lifecycle.close();
      status.close();
      for (const c of status.clients) c.terminate();
      wss.close();
      await stopped;
      origins.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * An app request: served by the dev server while it runs and the preview is ready, failed (its
 * last app keeps answering), or installing; a probe (`x-preview-probe`) reaches it in any phase.
 * Otherwise 503 with the phase, and `Retry-After: 1`.
 */
function serveApp(
  req: IncomingMessage,
  res: ServerResponse,
  status: DaemonStatus,
  dev: DevServer | undefined,
) {
  const { phase, message } = status;
  // While an install runs or after it failed, the app that ran before keeps answering.
  if (
    dev &&
    (phase === 'ready' || phase === 'error' || phase === 'installing' || req.headers['x-preview-probe']) &&
    dev.alive
  )
    return dev.handle(req, res);
  const text = `preview ${phase}${message ? `: ${message}` : ''}`;
  // A page the browser navigated to (a reload by Vite's client after a restart, a user's click)
  // asks again every second by itself, so it shows the app once the dev server is back.
  if (isNavigation(req)) {
    res.writeHead(503, { 'content-type': 'text/html; charset=utf-8', 'retry-after': '1' });
    res.end(notReadyPage(phase, text));
    return;
  }
  res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' });
  res.end(`${text}\n`);
}

/** A document request (Fetch Metadata `Sec-Fetch-Dest: document`, else an Accept naming HTML). */
function isNavigation(req: IncomingMessage): boolean {
  const dest = req.headers['sec-fetch-dest'];
  if (dest) return dest === 'document' || dest === 'iframe';
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The not-ready page: the phase and message, reloading itself every second (`<meta refresh>`). */
export function notReadyPage(phase: string, text: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="1"><meta name="preview-status" content="${escapeHtml(phase)}"><title>${escapeHtml(text.slice(0, 80))}</title></head><body><pre>${escapeHtml(text)}</pre></body></html>\n`;
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
