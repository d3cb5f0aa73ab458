import { ConfigError, PreviewError, type ProjectFiles } from '@preview/tiers';
import { BundlerRuntime, type BundlerRuntimeOptions } from './runtimes/bundler/bundler-runtime.ts';
import { RemoteBundlerRuntime } from './runtimes/bundler/remote-runtime.ts';
import { isRuntimeUnavailable, type PreviewRuntime, type RuntimeUnavailableError } from './runtimes/types.ts';
import { WebContainerRuntime, type WebContainerRuntimeOptions } from './runtimes/webcontainer-runtime.ts';

/** What `mountPreview` needs of a preview (the router's PreviewView has these fields). */
export interface MountSession {
  id: string;
  tier: 'browser' | 'docker' | 'fly' | null;
  /** Server tiers: the preview URL, carrying its short-lived access token. */
  previewUrl: string | null;
  placement?: { runtime?: 'webcontainer' | 'bundler' } | Record<string, unknown> | null;
}

export interface MountOptions {
  /** The project's files (the browser tier runs them locally). */
  files?: ProjectFiles;
  /**
   * Called when the local runtime cannot run here (RuntimeUnavailable): ask the router for a server
   * tier for the same preview, and return the moved session. Default, with `router`:
   * `router.movePlacement(session.id, { tier: serverTier, reason })` (same id, files and database).
   * Without either, the error is thrown.
   */
  requestServerTier?: (reason: RuntimeUnavailableError) => Promise<MountSession>;
  /**
   * The router client (`PreviewClient`): the default `requestServerTier` moves the preview with it,
   * and the default BundlerRuntime takes the preview's import map from it (`importMap(id)`: every
   * dependency of the project's package.json, served by the router's package cache), unless
   * `bundler.vendor` or `bundler.importMap` names one (an offline page's own map).
   */
  router?: {
    movePlacement(id: string, body: { tier: 'docker' | 'fly'; reason: string }): Promise<MountSession>;
    importMap?(id: string): Promise<{ imports: Record<string, string> }>;
    /** The router's runtime origin (`PreviewClient.runtimeHost`): where the bundler runs, if it hosts one. */
    runtimeHost?(): Promise<string | undefined>;
  };
  /** The server tier the fallback asks for. @default 'docker' */
  serverTier?: 'docker' | 'fly';
  /** Builds the local runtime (default: WebContainerRuntime or BundlerRuntime with the options below). */
  createRuntime?: (kind: 'webcontainer' | 'bundler', session: MountSession) => PreviewRuntime;
  /**
   * The bundler runtime's options. `hostUrl` (default: `router.runtimeHost()`) is the runtime origin
   * it runs on (RemoteBundlerRuntime: a hidden frame of that origin's `host.html`), so the app is
   * never on this page's origin. Without one, or when it is this page's own origin (a page served
   * by the runtime host itself), BundlerRuntime runs in this page.
   */
  bundler?: Omit<BundlerRuntimeOptions, 'previewId'> & { hostUrl?: string };
  webcontainer?: WebContainerRuntimeOptions;
  /** iframe `sandbox` tokens (default below). */
  sandbox?: string;
  title?: string;
  signal?: AbortSignal;
  /** Status for the embedding UI: 'booting', 'installing', 'starting', 'ready', 'fallback'. */
  onStatus?: (status: 'booting' | 'installing' | 'starting' | 'ready' | 'fallback', detail?: string) => void;
}

export interface MountedPreview {
  iframe: HTMLIFrameElement;
  /** The session now shown: the original one, or the server tier it fell back to. */
  session: MountSession;
  /** The local runtime, while the preview runs in this tab (undefined once it fell back). */
  readonly runtime: PreviewRuntime | undefined;
  /** Reloads the frame (server tiers get updates by HMR; this is for a manual refresh). */
  reload(): void;
  unmount(): Promise<void>;
}

/**
 * The preview can run scripts, submit forms and open popups. `allow-same-origin` keeps its own
 * origin (a server preview lives on `<id>.<PREVIEW_DOMAIN>`, never the editor's), which HMR's
 * WebSocket, cookies and the bundler's service worker need.
 */
export const DEFAULT_SANDBOX =
  'allow-scripts allow-same-origin allow-forms allow-popups allow-modals allow-downloads';

/**
 * The bundler runtime for a preview: on the runtime origin (RemoteBundlerRuntime) when there is one
 * and it is not this page's, else in this page. The import map is the router's, unless the caller
 * named its own (`vendor` or `importMap`).
 */
async function bundlerRuntime(previewId: string, options: MountOptions): Promise<PreviewRuntime> {
  const { hostUrl: namedHost, ...bundler } = options.bundler ?? {};
  const router = options.router;
  const importMap =
    router?.importMap && !bundler.vendor && !bundler.importMap
      ? { importMap: () => router.importMap!(previewId) }
      : {};
  const hostUrl = namedHost ?? (await router?.runtimeHost?.().catch(() => undefined));
  if (hostUrl && new URL(hostUrl, location.href).origin !== location.origin)
    return new RemoteBundlerRuntime({
      previewId,
      hostUrl: new URL(hostUrl, location.href).href,
      ...importMap,
      ...(bundler.vendor ? { vendor: bundler.vendor } : {}),
      ...(bundler.importMap ? { importMap: bundler.importMap } : {}),
      ...(bundler.bootTimeoutMs ? { bootTimeoutMs: bundler.bootTimeoutMs } : {}),
    });
  return new BundlerRuntime({ previewId, ...importMap, ...bundler });
}

/**
 * Shows a preview inside `element`: an iframe on the preview URL for server tiers, or the local
 * runtime for the browser tier. When the local runtime is unavailable here (WebContainers did not
 * boot; a dependency the router's package cache refuses, at start or after a package.json edit:
 * the runtime reports RuntimeUnavailableError naming the package), it asks the router for a server
 * tier for the same id through `requestServerTier` and shows that instead.
 *
 * @example
 * const preview = await client.create({ files, client: { webcontainer: true, bundler: true } });
 * // On fallback the preview moves to docker under the same id (POST /v1/previews/:id/placement).
 * const mounted = await mountPreview(document.querySelector('#preview')!, preview, { files, router: client });
 * await mounted.unmount();
 */
export async function mountPreview(
  element: HTMLElement,
  session: MountSession,
  options: MountOptions = {},
): Promise<MountedPreview> {
  if (!element || typeof (element as HTMLElement).appendChild !== 'function')
    throw new ConfigError('invalid_config', 'mountPreview: element must be a DOM element');
  const iframe = document.createElement('iframe');
  iframe.setAttribute('sandbox', options.sandbox ?? DEFAULT_SANDBOX);
  iframe.setAttribute('allow', 'clipboard-read; clipboard-write; fullscreen');
  iframe.setAttribute('referrerpolicy', 'no-referrer');
  iframe.setAttribute('title', options.title ?? `preview ${session.id}`);
  iframe.dataset['previewId'] = session.id;
  iframe.style.border = '0';
  iframe.style.width = '100%';
  iframe.style.height = '100%';
  element.appendChild(iframe);

  let runtime: PreviewRuntime | undefined;
  let shown = session;
  const showServer = (s: MountSession) => {
    if (!s.previewUrl)
      throw new PreviewError('no_preview_url', `preview ${s.id} (${s.tier}) has no preview URL yet`);
    const url = new URL(s.previewUrl, location.href);
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new PreviewError('invalid_preview_url', `preview URL must be http(s): ${s.previewUrl}`);
    iframe.dataset['tier'] = s.tier ?? '';
    iframe.src = url.href;
    shown = s;
  };

  const router = options.router;
  const requestServerTier =
    options.requestServerTier ??
    (router
      ? (why: RuntimeUnavailableError) =>
          router.movePlacement(session.id, {
            tier: options.serverTier ?? 'docker',
            reason: `${why.runtime} runtime unavailable: ${why.message}`,
          })
      : undefined);
  /** The same-id fallback: the local runtime goes, the server tier's preview is shown. */
  const fallBack = async (e: RuntimeUnavailableError) => {
    if (!requestServerTier) throw e;
    const local = runtime;
    runtime = undefined;
    await local?.teardown().catch(() => {});
    options.onStatus?.('fallback', e.message);
    const server = await requestServerTier(e);
    if (server.tier === 'browser' || server.tier === null)
      throw new PreviewError('fallback_failed', `asked for a server tier, got ${server.tier}`, {
        cause: e,
      });
    iframe.dataset['fallbackReason'] = e.message.slice(0, 200);
    showServer(server);
  };

  try {
    if (session.tier === 'browser') {
      const kind = ((session.placement as { runtime?: string } | null)?.runtime ?? 'bundler') as
        | 'webcontainer'
        | 'bundler';
      if (!options.files)
        throw new ConfigError('invalid_config', 'mountPreview: the browser tier needs options.files');
      try {
        runtime = options.createRuntime
          ? options.createRuntime(kind, session)
          : kind === 'webcontainer'
            ? new WebContainerRuntime(options.webcontainer)
            : await bundlerRuntime(session.id, options);
        options.onStatus?.('booting', kind);
        await runtime.mount(options.files, { signal: options.signal });
        options.onStatus?.('installing');
        await runtime.install({ signal: options.signal });
        options.onStatus?.('starting');
        const ready = await runtime.run({ signal: options.signal });
        iframe.dataset['tier'] = 'browser';
        iframe.dataset['runtime'] = kind;
        iframe.src = ready.url;
        // A later build may find a dependency that cannot run in a browser (a package.json edit).
        const rt = runtime;
        rt.on('error', (e) => {
          if (!isRuntimeUnavailable(e) || !requestServerTier || runtime !== rt) return;
          void fallBack(e).catch((err: unknown) =>
            options.onStatus?.('fallback', `failed: ${(err as Error).message ?? String(err)}`),
          );
        });
      } catch (e) {
        if (!isRuntimeUnavailable(e) || !requestServerTier) throw e;
        await fallBack(e);
      }
    } else {
      showServer(session);
    }
  } catch (e) {
    iframe.remove();
    await runtime?.teardown().catch(() => {});
    throw e;
  }
  options.onStatus?.('ready');

  let unmounted = false;
  return {
    iframe,
    get session() {
      return shown;
    },
    get runtime() {
      return runtime;
    },
    reload() {
      if (iframe.src) iframe.setAttribute('src', iframe.src);
    },
    async unmount() {
      if (unmounted) return;
      unmounted = true;
      iframe.remove();
      await runtime?.teardown();
    },
  };
}
