import {
  type MountedPreview,
  mountPreview,
  PreviewClient,
  type PreviewView,
  type SyncSession,
} from '@preview/browser-runtime';
import type { FileOp, ProjectFiles } from '@preview/tiers';
import { CodeEditor } from './code-editor.ts';
import { buildTree, firstFile, pathProblem, pathsUnder, type TreeNode, textOf } from './files.ts';
import { StatusBar } from './status.ts';

/** What `localStorage` keeps so that reopening the page restores the last project. */
interface SavedProject {
  previewId: string;
  projectId: string;
  template: string;
}

const TOKEN_KEY = 'preview.token';
const PROJECT_KEY = 'preview.project';
/** Typing pauses this long before the changed files go out on the sync socket, ms. */
const EDIT_DEBOUNCE_MS = 150;
const ENDED = new Set(['ended', 'failed', 'stopping']);

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/**
 * The editor page: token, template picker, file tree, CodeMirror, the preview (`mountPreview`), the
 * sync socket (`PreviewClient.sync`), SSE status and log, and the lifecycle buttons.
 */
export class EditorPage {
  readonly status = new StatusBar($('status'), $('log'));
  readonly editor: CodeEditor;
  files = new Map<string, string>();
  folders = new Set<string>();
  selected: string | undefined;
  templates: Array<{ name: string; files: ProjectFiles }> = [];
  preview: PreviewView | undefined;
  projectId: string | undefined;
  sync: SyncSession | undefined;
  mounted: MountedPreview | undefined;
  events: EventSource | undefined;
  #pending = new Set<string>();
  #debounce: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    this.editor = new CodeEditor($('cm'), (path, text) => this.#edited(path, text));
    const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
    if (fromHash) {
      localStorage.setItem(TOKEN_KEY, fromHash);
      history.replaceState(null, '', location.pathname + location.search);
    }
    $<HTMLInputElement>('token').value = fromHash ?? localStorage.getItem(TOKEN_KEY) ?? '';
    $('token').addEventListener('change', () => {
      localStorage.setItem(TOKEN_KEY, this.token);
      void this.start();
    });
    $('create').addEventListener('click', () => void this.#guard(() => this.createProject()));
    $('reload').addEventListener('click', () => this.mounted?.reload());
    $('stop').addEventListener('click', () => void this.#guard(() => this.stop()));
    $('suspend').addEventListener('click', () => void this.#guard(() => this.lifecycle('suspend')));
    $('resume').addEventListener('click', () => void this.#guard(() => this.lifecycle('resume')));
    $('move').addEventListener('click', () => void this.#guard(() => this.moveToServer()));
    $('export').addEventListener('click', () => void this.#guard(() => this.exportDatabase()));
    $('new-file').addEventListener('click', () => void this.#guard(async () => this.newFile()));
    $('new-folder').addEventListener('click', () => void this.#guard(async () => this.newFolder()));
    $('rename').addEventListener('click', () => void this.#guard(async () => this.renameSelected()));
    $('delete').addEventListener('click', () => void this.#guard(async () => this.deleteSelected()));
  }

  get token(): string {
    return $<HTMLInputElement>('token').value.trim();
  }

  get client(): PreviewClient {
    return new PreviewClient({ baseUrl: location.origin, token: () => this.token });
  }

  /** Runs `f`, showing its error in the status bar instead of throwing. */
  async #guard(f: () => Promise<void>): Promise<void> {
    try {
      await f();
    } catch (e) {
      this.status.set({ error: (e as Error).message });
    }
  }

  /** Loads the templates and, when the page was open before, restores the last project. */
  async start(): Promise<void> {
    if (!this.token) {
      this.status.set({ note: 'paste an access token (npm start prints a link with one)' });
      return;
    }
    await this.#guard(async () => {
      this.templates = (
        await this.#api<{ templates: EditorPage['templates'] }>('GET', '/v1/templates')
      ).templates;
      const select = $<HTMLSelectElement>('template');
      select.replaceChildren(...this.templates.map((t) => new Option(t.name, t.name)));
      const saved = JSON.parse(localStorage.getItem(PROJECT_KEY) ?? 'null') as SavedProject | null;
      if (saved)
        await this.restore(saved).catch((e: unknown) => {
          // Another user's token, or the project is gone: start afresh.
          if ((e as { code?: string }).code !== 'not_found') throw e;
          localStorage.removeItem(PROJECT_KEY);
          this.status.reset('the last project is not there any more: pick a template');
        });
    });
  }

  async #api<T>(method: string, path: string): Promise<T> {
    const res = await fetch(path, { method, headers: { authorization: `Bearer ${this.token}` } });
    const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
    if (!res.ok) throw new Error(`${method} ${path}: ${body?.error?.message ?? res.status}`);
    return body as T;
  }

  /** A new project from the picked template: create its preview and open it. */
  async createProject(): Promise<void> {
    const name = $<HTMLSelectElement>('template').value;
    const template = this.templates.find((t) => t.name === name);
    if (!template) throw new Error('template: pick one of the list');
    await this.#close();
    const projectId = `p-${crypto.randomUUID()}`;
    this.status.reset(`creating a ${name} preview…`);
    const preview = await this.client.create(
      {
        files: template.files,
        template: name,
        projectId,
        client: this.#clientCapabilities(),
        ...($<HTMLInputElement>('server-only').checked ? { serverOnly: true } : {}),
      },
      { idempotencyKey: crypto.randomUUID() },
    );
    await this.open(preview, projectId, template.files);
  }

  /**
   * What this tab offers to run (`client` of the create): WebContainers when the user opts in and the
   * page is cross-origin isolated. Not the bundler runtime: its worker, service worker and wasm are
   * served on `bundler.<PREVIEW_DOMAIN>` (the runtime host), not on this page's origin.
   */
  #clientCapabilities(): { webcontainer: boolean; bundler: boolean } {
    return { webcontainer: $<HTMLInputElement>('in-browser').checked && crossOriginIsolated, bundler: false };
  }

  /** Reopens a saved project: its preview when still live, else a new one from its stored files. */
  async restore(saved: SavedProject): Promise<void> {
    this.status.reset('restoring the last project…');
    const client = this.client;
    let preview = await client.get(saved.previewId);
    const files = await this.#api<ProjectFiles>(
      'GET',
      `/v1/previews/${encodeURIComponent(saved.previewId)}/files`,
    );
    $<HTMLSelectElement>('template').value = saved.template;
    if (ENDED.has(preview.state))
      preview = await client.create({
        files,
        template: saved.template,
        projectId: saved.projectId,
        client: this.#clientCapabilities(),
      });
    await this.open(preview, saved.projectId, files);
  }

  /** Shows a preview: files in the tree and editor, sync, events and the preview frame. */
  async open(preview: PreviewView, projectId: string, files: ProjectFiles): Promise<void> {
    this.preview = preview;
    this.projectId = projectId;
    localStorage.setItem(
      PROJECT_KEY,
      JSON.stringify({ previewId: preview.id, projectId, template: preview.template } satisfies SavedProject),
    );
    this.files = new Map(Object.entries(files).map(([p, v]) => [p, textOf(v)]));
    this.folders.clear();
    this.select(firstFile([...this.files.keys()]));
    this.status.showPreview(preview);
    this.#follow(preview.id);
    this.#buttons();
    if (ENDED.has(preview.state)) return;
    await this.#mount();
  }

  async #mount(): Promise<void> {
    const preview = this.preview!;
    await this.mounted?.unmount();
    this.mounted = undefined;
    if (preview.tier !== 'browser' && !preview.previewUrl) return;
    const el = $('preview');
    el.replaceChildren();
    this.mounted = await mountPreview(el, preview, {
      files: Object.fromEntries(this.files),
      router: this.client,
      onStatus: (s, detail) => this.status.set({ note: `preview: ${s}${detail ? ` (${detail})` : ''}` }),
    });
    // The browser runtime may have been unavailable: the preview moved to a server tier.
    const shown = this.mounted.session as PreviewView;
    if (shown.tier !== preview.tier) {
      this.preview = { ...preview, ...shown };
      this.status.showPreview(this.preview);
    }
    this.#connectSync();
  }

  #connectSync(): void {
    this.sync?.close();
    const runtime = this.mounted?.runtime;
    const sync = this.client.sync(this.preview!.id, {
      coalesceMs: 0,
      ...(this.preview!.tier === 'browser' && runtime
        ? {
            applyLocally: async (ops: FileOp[]) => {
              for (const op of ops)
                if (op.op === 'put') await runtime.writeFile(op.path, op.content as string);
            },
          }
        : {}),
    });
    sync.on('state', (e) => this.status.set({ sync: e.state }));
    sync.on('hmr', (e) => this.status.set({ updateMs: e.ms, updateKind: e.kind }));
    sync.on('applied', (e) => {
      if (this.preview?.tier === 'browser') this.status.set({ updateMs: e.ms, updateKind: 'browser' });
    });
    sync.on('rejected', (e) => this.status.set({ error: e.error.message }));
    sync.on('error', (e) => this.status.set({ error: e.error.message }));
    this.sync = sync;
    this.#flush();
  }

  #follow(id: string): void {
    this.events?.close();
    const es = new EventSource(
      `/v1/previews/${encodeURIComponent(id)}/events?access_token=${encodeURIComponent(this.token)}`,
    );
    es.addEventListener('state', (e) => {
      const d = JSON.parse((e as MessageEvent<string>).data) as Partial<PreviewView> & { state: string };
      if (this.preview) this.preview = { ...this.preview, state: d.state, tier: d.tier ?? this.preview.tier };
      this.status.set({ state: d.state, ...(d.tier ? { tier: d.tier } : {}), error: d.error ?? '' });
      this.#buttons();
      if (d.state === 'ended') es.close();
    });
    es.addEventListener('status', (e) => {
      const d = JSON.parse((e as MessageEvent<string>).data) as { phase: string; message?: string };
      this.status.set({ phase: d.phase + (d.message ? `: ${d.message}` : '') });
    });
    es.addEventListener('log', (e) => {
      this.status.log((JSON.parse((e as MessageEvent<string>).data) as { lines: string[] }).lines);
    });
    this.events = es;
  }

  #buttons(): void {
    const s = this.preview?.state;
    const live = !!s && !ENDED.has(s);
    $<HTMLButtonElement>('stop').disabled = !live;
    $<HTMLButtonElement>('reload').disabled = !live;
    $<HTMLButtonElement>('suspend').disabled = s !== 'ready' || this.preview?.tier === 'browser';
    $<HTMLButtonElement>('resume').disabled = s !== 'suspended';
    $<HTMLButtonElement>('move').disabled = !live || this.preview?.tier !== 'browser';
    $<HTMLButtonElement>('export').disabled = !this.preview;
  }

  async #close(): Promise<void> {
    this.sync?.close();
    this.sync = undefined;
    this.events?.close();
    await this.mounted?.unmount().catch(() => {});
    this.mounted = undefined;
  }

  async stop(): Promise<void> {
    if (!this.preview) return;
    await this.client.stop(this.preview.id);
    await this.#close();
    this.preview = { ...this.preview, state: 'ended' };
    this.status.set({ state: 'ended' });
    this.#buttons();
  }

  async lifecycle(action: 'suspend' | 'resume'): Promise<void> {
    if (!this.preview) return;
    const p = await this.client[action](this.preview.id);
    this.preview = p;
    this.status.showPreview(p);
    this.#buttons();
  }

  async moveToServer(): Promise<void> {
    if (!this.preview) return;
    this.preview = await this.client.movePlacement(this.preview.id, {
      tier: 'docker',
      reason: 'moved to a server tier from the editor',
    });
    this.status.showPreview(this.preview);
    this.#buttons();
    await this.#mount();
  }

  async exportDatabase(): Promise<void> {
    if (!this.preview) return;
    const res = await fetch(`/v1/previews/${encodeURIComponent(this.preview.id)}/database/export`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!res.ok) {
      const b = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
      throw new Error(`export database: ${b?.error?.message ?? res.status}`);
    }
    const a = document.createElement('a');
    a.href = URL.createObjectURL(await res.blob());
    a.download = `preview-${this.preview.id}.sql`;
    a.click();
    URL.revokeObjectURL(a.href);
  }

  /** A user edit: kept, and sent once typing pauses. */
  #edited(path: string, text: string): void {
    this.files.set(path, text);
    this.#pending.add(path);
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => this.#flush(), EDIT_DEBOUNCE_MS);
  }

  /** Sends the pending edits; kept until the sync session exists (the preview is still mounting). */
  #flush(): void {
    if (!this.sync) return;
    for (const p of this.#pending) {
      const text = this.files.get(p);
      if (text !== undefined) this.sync?.write(p, text);
    }
    this.#pending.clear();
  }

  /** Opens `path` in the editor (a folder only selects it). */
  select(path: string | undefined): void {
    this.#flush();
    this.selected = path;
    if (path === undefined || this.files.has(path)) {
      this.editor.open(path, path === undefined ? '' : (this.files.get(path) ?? ''));
      $('path').textContent = path ?? '';
    }
    this.renderTree();
  }

  /** The folder new files go in: the selected folder, or the selected file's folder. */
  #baseFolder(): string {
    const s = this.selected;
    if (!s) return '';
    if (this.folders.has(s) || pathsUnder(this.files.keys(), s).some((p) => p !== s)) return `${s}/`;
    const i = s.lastIndexOf('/');
    return i < 0 ? '' : s.slice(0, i + 1);
  }

  #ask(what: string, initial: string): string | undefined {
    const v = prompt(what, initial)?.trim();
    if (!v) return undefined;
    const problem = pathProblem(v);
    if (problem) throw new Error(problem);
    return v;
  }

  newFile(): void {
    const path = this.#ask('New file path', this.#baseFolder());
    if (!path) return;
    if (this.files.has(path)) throw new Error(`path: ${path} already exists`);
    this.files.set(path, '');
    this.sync?.write(path, '');
    this.select(path);
  }

  newFolder(): void {
    const path = this.#ask('New folder path', this.#baseFolder());
    if (!path) return;
    this.folders.add(path);
    this.select(path);
  }

  renameSelected(): void {
    const from = this.selected;
    if (!from) throw new Error('rename: select a file or folder first');
    const to = this.#ask(`Rename ${from} to`, from);
    if (!to || to === from) return;
    this.#flush();
    for (const p of pathsUnder(this.files.keys(), from)) {
      const next = to + p.slice(from.length);
      if (this.files.has(next)) throw new Error(`path: ${next} already exists`);
      this.files.set(next, this.files.get(p)!);
      this.files.delete(p);
      this.sync?.rename(p, next);
    }
    for (const f of [...this.folders])
      if (f === from || f.startsWith(`${from}/`)) {
        this.folders.delete(f);
        this.folders.add(to + f.slice(from.length));
      }
    this.select(to);
  }

  deleteSelected(): void {
    const path = this.selected;
    if (!path) throw new Error('delete: select a file or folder first');
    if (!confirm(`Delete ${path}?`)) return;
    this.#flush();
    for (const p of pathsUnder(this.files.keys(), path)) {
      this.files.delete(p);
      this.sync?.delete(p);
    }
    for (const f of [...this.folders]) if (f === path || f.startsWith(`${path}/`)) this.folders.delete(f);
    this.select(firstFile([...this.files.keys()]));
  }

  renderTree(): void {
    const draw = (nodes: TreeNode[]): HTMLLIElement[] =>
      nodes.map((n) => {
        const li = document.createElement('li');
        li.className = n.folder ? 'folder' : 'file';
        const label = document.createElement('span');
        label.textContent = n.name;
        label.dataset['path'] = n.path;
        if (n.path === this.selected) label.classList.add('selected');
        label.addEventListener('click', () => this.select(n.path));
        li.append(label);
        if (n.folder) {
          const ul = document.createElement('ul');
          ul.append(...draw(n.children));
          li.append(ul);
        }
        return li;
      });
    $('tree').replaceChildren(...draw(buildTree(this.files.keys(), this.folders)));
  }
}
