/**
 * The script the bundler injects into every preview page (as the source text of `frameClient`, so
 * it must not reference anything outside its own body). It runs in the preview frame and:
 *
 * - listens on the preview's BroadcastChannel (`preview-bundler:<id>`) for the runtime's messages:
 *   `'reload'`; `{type: 'update', build, modules, code}` (hot: CSS modules and React Fast Refresh
 *   boundaries are imported again, from the code the message carries or with `?t=<build>` from the
 *   service worker; anything else reloads the page);
 *   `{type: 'published', build}` (that build is in Cache Storage: a page that must reload for a hot
 *   update it cannot take reloads then); `{type: 'error', errors}` (the error overlay);
 *   `{type: 'ok', build}` (clears it);
 * - says `{type: 'hello', build}` on load, so a page that loaded an older build is reloaded;
 * - keeps `globalThis.__previewBundler`: `style(id, css)` (a CSS module's `<style>`) and
 *   `refresh(id, exports, hooks, star)` (a module's React components registered with
 *   `react-refresh`; a module whose every export is a component is a refresh boundary);
 * - shows build errors in an overlay (file, line, column, message, the source line) like Vite's,
 *   and posts them to the embedding page (`{type: 'preview-bundler:error', errors}`, then
 *   `{type: 'preview-bundler:ok', build}`; same origin only).
 */

/** One build problem, as the overlay and the embedding page get it (1-based line, 0-based column as esbuild). */
export interface OverlayError {
  file?: string;
  line?: number;
  column?: number;
  message: string;
  /** The source line the error is on. */
  lineText?: string;
}

/** What `frameClient` is called with (JSON in the page). */
export interface FrameClientConfig {
  /** The BroadcastChannel's name. */
  channel: string;
  /** The build this page was written by. */
  build: number;
  /** `<origin-relative scope>__m/` (module URLs are this plus the project path). */
  modules: string;
}

type RefreshRuntime = {
  register(type: unknown, id: string): void;
  setSignature(type: unknown, key: string, forceReset?: boolean, getCustomHooks?: () => unknown[]): void;
  isLikelyComponentType(type: unknown): boolean;
  performReactRefresh(): unknown;
};

/**
 * Runs in the preview frame (see the file's docstring). Serialised with `Function.prototype.toString`:
 * self-contained, no imports, no helpers.
 */
export function frameClient(cfg: FrameClientConfig): void {
  const w = window as unknown as Record<string, unknown>;
  const channel = new BroadcastChannel(cfg.channel);
  /** Module id → whether it is a React Fast Refresh boundary (every export a component). */
  const boundaries = new Map<string, boolean>();
  let rr: RefreshRuntime | undefined;
  let queue: Promise<void> = Promise.resolve();
  let overlay: HTMLElement | undefined;
  const toParent = (msg: unknown) => {
    try {
      if (window.parent !== window) window.parent.postMessage(msg, location.origin);
    } catch {
      // a parent on another origin hears nothing
    }
  };
  const isStyle = (id: string) => /\.(css)$/.test(id);

  const hideOverlay = () => {
    overlay?.remove();
    overlay = undefined;
  };
  const showOverlay = (errors: OverlayError[]) => {
    hideOverlay();
    const host = document.createElement('preview-error-overlay');
    host.setAttribute('data-preview-overlay', '');
    host.style.cssText = 'position:fixed;inset:0;z-index:2147483647;';
    const root = host.attachShadow({ mode: 'open' });
    const box = document.createElement('div');
    box.setAttribute(
      'style',
      [
        'position:absolute;inset:0;overflow:auto;background:rgba(0,0,0,.66);padding:32px;',
        'font:14px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace;color:#eee',
      ].join(''),
    );
    const card = document.createElement('div');
    card.setAttribute(
      'style',
      'background:#181818;border-top:6px solid #ff5555;padding:20px 24px;max-width:960px;margin:0 auto;border-radius:6px',
    );
    const title = document.createElement('div');
    title.textContent = errors.length > 1 ? `Build failed: ${errors.length} errors` : 'Build failed';
    title.setAttribute('style', 'color:#ff5555;font-weight:bold;margin-bottom:12px');
    card.append(title);
    for (const e of errors) {
      const item = document.createElement('div');
      item.setAttribute('data-error', '');
      item.setAttribute('style', 'margin:0 0 16px');
      if (e.file) {
        const at = document.createElement('a');
        at.setAttribute('data-location', '');
        at.href = '#';
        at.textContent = `${e.file}${e.line ? `:${e.line}${e.column !== undefined ? `:${e.column}` : ''}` : ''}`;
        at.setAttribute('style', 'color:#7fb6ff;text-decoration:underline;cursor:pointer');
        at.onclick = (ev) => {
          ev.preventDefault();
          toParent({ type: 'preview-bundler:open', file: e.file, line: e.line, column: e.column });
        };
        item.append(at);
      }
      const msg = document.createElement('pre');
      msg.setAttribute('data-message', '');
      msg.setAttribute('style', 'margin:6px 0;white-space:pre-wrap;color:#ffb3b3');
      msg.textContent = e.message;
      item.append(msg);
      if (e.lineText !== undefined) {
        const code = document.createElement('pre');
        code.setAttribute('data-code', '');
        code.setAttribute('style', 'margin:0;padding:8px;background:#000;color:#ddd;white-space:pre');
        const gutter = e.line ? `${e.line} | ` : '';
        code.textContent = `${gutter}${e.lineText}\n${' '.repeat(gutter.length + (e.column ?? 0))}^`;
        item.append(code);
      }
      card.append(item);
    }
    const hint = document.createElement('div');
    hint.textContent = 'Fix the code and save: this overlay closes by itself.';
    hint.setAttribute('style', 'color:#999;font-size:12px');
    card.append(hint);
    box.append(card);
    root.append(box);
    overlay = host;
    (document.body ?? document.documentElement).append(host);
  };

  const api = {
    build: cfg.build,
    /** A CSS module's text as the page's `<style data-preview-style="<id>">`. */
    style(id: string, css: string) {
      let el = [...document.querySelectorAll('style[data-preview-style]')].find(
        (s) => s.getAttribute('data-preview-style') === id,
      );
      if (!el) {
        el = document.createElement('style');
        el.setAttribute('data-preview-style', id);
        document.head.append(el);
      }
      el.textContent = css;
    },
    /** Set by the page's React Refresh preamble, before any module runs. */
    setRefreshRuntime(runtime: RefreshRuntime) {
      rr = runtime;
    },
    /** A module's exports: components registered by `<id> <export>`; the module is a boundary when all are. */
    refresh(id: string, exports: Record<string, unknown>, hooks: string, star: boolean) {
      const names = Object.keys(exports);
      let boundary = !star && names.length > 0 && Boolean(rr);
      for (const name of names) {
        const value = exports[name];
        if (rr?.isLikelyComponentType(value)) {
          rr.register(value, `${id} ${name}`);
          rr.setSignature(value, hooks, false, () => []);
        } else boundary = false;
      }
      boundaries.set(id, boundary);
    },
  };
  w['__previewBundler'] = api;

  /**
   * The new version of a module: from the code the message carries (a blob URL, its absolute
   * imports made full URLs so they name the same module instances), else from the service worker.
   */
  const load = async (id: string, build: number, code: string | undefined) => {
    if (code === undefined || code.includes('import.meta')) {
      await import(`${cfg.modules}${id}?t=${build}`);
      return;
    }
    const text = code.replaceAll(`"${cfg.modules}`, `"${location.origin}${cfg.modules}`);
    const url = URL.createObjectURL(new Blob([text], { type: 'text/javascript' }));
    try {
      await import(url);
    } finally {
      URL.revokeObjectURL(url);
    }
  };

  /** A build this page must reload for, once the runtime says it is in Cache Storage (`published`). */
  let reloadAt: number | undefined;
  const reloadWhenPublished = (build: number) => {
    reloadAt = build;
  };

  const update = async (msg: { build: number; modules: string[]; code?: string[] }) => {
    if (msg.modules.some((id) => !isStyle(id) && boundaries.get(id) !== true)) {
      reloadWhenPublished(msg.build);
      return;
    }
    for (const [i, id] of msg.modules.entries()) {
      await load(id, msg.build, msg.code?.[i]);
      if (!isStyle(id) && boundaries.get(id) !== true) {
        reloadWhenPublished(msg.build);
        return;
      }
    }
    if (msg.modules.some((id) => !isStyle(id))) rr?.performReactRefresh();
    api.build = msg.build;
    hideOverlay();
    toParent({ type: 'preview-bundler:ok', build: msg.build });
  };

  channel.onmessage = (e: MessageEvent) => {
    const m = e.data as
      | 'reload'
      | { type: 'update'; build: number; modules: string[]; code?: string[] }
      | { type: 'error'; errors: OverlayError[] }
      | { type: 'ok'; build: number }
      | { type: 'published'; build: number };
    if (m === 'reload') {
      location.reload();
      return;
    }
    if (!m || typeof m !== 'object') return;
    if (m.type === 'update') {
      queue = queue.then(() => update(m)).catch(() => reloadWhenPublished(m.build));
    } else if (m.type === 'published') {
      queue = queue.then(() => {
        if (reloadAt !== undefined && m.build >= reloadAt) location.reload();
      });
    } else if (m.type === 'error') {
      queue = queue.then(() => {
        showOverlay(m.errors);
        toParent({ type: 'preview-bundler:error', errors: m.errors });
      });
    } else if (m.type === 'ok') {
      queue = queue.then(() => {
        if (overlay) toParent({ type: 'preview-bundler:ok', build: m.build });
        hideOverlay();
      });
    }
  };
  channel.postMessage({ type: 'hello', build: cfg.build });
}
