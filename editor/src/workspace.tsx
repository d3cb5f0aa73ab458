import type { MountedPreview, PreviewClient } from '@preview/browser-runtime';
import {
  type FaultLocation,
  PreviewPanel,
  type PreviewPanelProps,
  type PreviewSessionHandle,
  usePreviewSession,
} from '@preview/browser-runtime/react';
import type { ProjectFiles } from '@preview/tiers';
import { type ReactNode, useEffect, useRef, useState } from 'react';
import type { CodeEditor } from './code-editor.ts';
import { CodeMirror } from './code-mirror.tsx';
import { EditDebouncer } from './debounce.ts';
import { buildTree, firstFile, pathProblem, pathsUnder, type TreeNode, textOf } from './files.ts';
import { type Reason, StatusBar, statusOf } from './status.tsx';

/** A project the editor has open: what the preview is created from. */
export interface OpenProject {
  /** Changes for each project opened (React's key: a new session). */
  key: string;
  projectId: string;
  /** The template, when known (the router detects one from the files otherwise). */
  template?: string | undefined;
  files: ProjectFiles;
  /** The preview id this project had (a restore), shown until the router answers. */
  knownPreviewId?: string | undefined;
  /** Browser runtimes this tab offers (`client` of the create). */
  runtimes: { webcontainer: boolean; bundler: boolean };
  serverOnly: boolean;
  /** `mountPreview` options for the browser tier (the bundler runtime's host). */
  mountOptions?: PreviewPanelProps['mountOptions'];
}

/** What `localStorage` keeps so that reopening the page restores the last project. */
export interface SavedProject {
  previewId: string;
  projectId: string;
  template: string;
}

export const PROJECT_KEY = 'preview.project';
/** A burst of typing is sent once it pauses this long, ms (its first keystroke goes at once). */
const EDIT_DEBOUNCE_MS = 150;
const ENDED = new Set(['ended', 'failed', 'stopping']);

/** What the page exposes as `window.editorPage` (tests and the e2e bench read it). */
export interface EditorPageGlobal {
  preview: { id: string; state: string; tier: string | null } | undefined;
  session: PreviewSessionHandle | undefined;
  /** The project's files as text (path → text), as the editor has them now. */
  readonly files: Map<string, string>;
  /** The open file's path and the cursor's 1-based line and column. */
  readonly cursor: { path: string | undefined; line: number; column: number } | undefined;
  /** Opens `file` at `line`:`column` as a click on an error location does. */
  openLocation(location: FaultLocation): void;
}

/** The page's layout: top bar, file tree, CodeMirror, preview and log, status bar. */
export function Shell(p: {
  header: ReactNode;
  actions: ReactNode;
  side: ReactNode;
  code: ReactNode;
  preview: ReactNode;
  log: string;
  status: ReactNode;
}): ReactNode {
  const logRef = useRef<HTMLPreElement>(null);
  // biome-ignore lint/correctness/useExhaustiveDependencies: scrolled to the end when the log grows
  useEffect(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [p.log]);
  return (
    <>
      <header id="bar">
        {p.header}
        <span className="sep" />
        {p.actions}
      </header>
      <main>
        <nav id="side">{p.side}</nav>
        <section id="code">{p.code}</section>
        <section id="right">
          <div id="preview">{p.preview}</div>
          <details id="log-box" open>
            <summary>Log</summary>
            <pre id="log" ref={logRef}>
              {p.log}
            </pre>
          </details>
        </section>
      </main>
      {p.status}
    </>
  );
}

/** The lifecycle buttons; all disabled without a session. */
export function Actions(p: {
  session?: PreviewSessionHandle;
  token?: () => string;
  run?: (what: string, f: () => Promise<void> | void) => void;
  reload?: () => void;
}): ReactNode {
  const s = p.session;
  const state = s?.state;
  const live = !!s?.previewId && !!state && !ENDED.has(state) && state !== 'creating';
  const run = p.run ?? (() => {});
  const store = s?.store;
  return (
    <>
      <button type="button" id="reload" disabled={!live} title="Reload the preview frame" onClick={p.reload}>
        Reload preview
      </button>
      <button type="button" id="stop" disabled={!live} onClick={() => run('stop', () => store?.stop())}>
        Stop
      </button>
      <button
        type="button"
        id="suspend"
        disabled={state !== 'ready' || s?.tier === 'browser'}
        onClick={() => run('suspend', () => store?.suspend())}
      >
        Suspend
      </button>
      <button
        type="button"
        id="resume"
        disabled={state !== 'suspended'}
        onClick={() => run('resume', () => store?.resume())}
      >
        Resume
      </button>
      <button
        type="button"
        id="move"
        disabled={!live || s?.tier !== 'browser'}
        onClick={() => run('move', () => store?.moveToServer('moved to a server tier from the editor'))}
      >
        Move to server tier
      </button>
      <button
        type="button"
        id="export"
        disabled={!s?.previewId}
        onClick={() => run('export', () => exportDatabase(p.token?.() ?? '', s!.previewId!))}
      >
        Export database
      </button>
    </>
  );
}

/**
 * `POST /v1/previews/:id/database/export` downloaded as `preview-<id>.sql`.
 * @throws Error `export database: <the router's message>`
 */
async function exportDatabase(token: string, id: string): Promise<void> {
  const res = await fetch(`/v1/previews/${encodeURIComponent(id)}/database/export`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  if (!res.ok) {
    const b = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
    throw new Error(`export database: ${b?.error?.message ?? res.status}`);
  }
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await res.blob());
  a.download = `preview-${id}.sql`;
  a.click();
  URL.revokeObjectURL(a.href);
}

function Tree(p: {
  files: ProjectFiles;
  folders: Set<string>;
  selected?: string;
  select(path: string): void;
}) {
  const draw = (nodes: TreeNode[]): ReactNode =>
    nodes.map((n) => (
      <li key={n.path} className={n.folder ? 'folder' : 'file'}>
        <span
          role="treeitem"
          tabIndex={0}
          aria-selected={n.path === p.selected}
          data-path={n.path}
          className={n.path === p.selected ? 'selected' : undefined}
          onClick={() => p.select(n.path)}
          onKeyDown={(e) => e.key === 'Enter' && p.select(n.path)}
        >
          {n.name}
        </span>
        {n.folder && <ul>{draw(n.children)}</ul>}
      </li>
    ));
  return <ul id="tree">{draw(buildTree(Object.keys(p.files), p.folders))}</ul>;
}

/** Asks for a path (window.prompt), checked with the editor's path rules. @throws Error naming the rule */
function ask(what: string, initial: string): string | undefined {
  const v = prompt(what, initial)?.trim();
  if (!v) return undefined;
  const problem = pathProblem(v);
  if (problem) throw new Error(problem);
  return v;
}

/**
 * One open project: `usePreviewSession` (created on mount with the project's id; kept running
 * when the page switches project), the file tree and CodeMirror (edits sent as typed through the
 * sync socket), `PreviewPanel`, the status bar and the log.
 */
export function Workspace(p: {
  project: OpenProject;
  client: PreviewClient;
  token: () => string;
  header: ReactNode;
  note: string;
}): ReactNode {
  const { project } = p;
  const session = usePreviewSession({
    client: p.client,
    files: project.files,
    projectId: project.projectId,
    ...(project.template ? { template: project.template } : {}),
    runtimes: project.runtimes,
    serverOnly: project.serverOnly,
    stopOnUnmount: false,
  });
  const { store } = session;
  const editor = useRef<CodeEditor | null>(null);
  const mounted = useRef<MountedPreview | undefined>(undefined);
  const [debouncer] = useState(
    () => new EditDebouncer(EDIT_DEBOUNCE_MS, (path, text) => store.write(path, text)),
  );
  const [folders, setFolders] = useState(() => new Set<string>());
  const [selected, setSelected] = useState<string | undefined>(undefined);
  const [actionError, setActionError] = useState('');
  const reasons = useRef<readonly Reason[]>([]);
  const fresh = session.preview?.['reasons'] as Reason[] | undefined;
  if (fresh?.length) reasons.current = fresh;

  useEffect(() => () => debouncer.flush(), [debouncer]);

  // Reopening the page restores this project.
  const template = project.template ?? session.preview?.template ?? '';
  useEffect(() => {
    if (!session.previewId) return;
    localStorage.setItem(
      PROJECT_KEY,
      JSON.stringify({
        previewId: session.previewId,
        projectId: project.projectId,
        template,
      } satisfies SavedProject),
    );
  }, [session.previewId, project.projectId, template]);

  const files = () => store.getSnapshot().files;
  const open = (path: string | undefined) => {
    debouncer.flush();
    setSelected(path);
    if (path === undefined || files()[path] !== undefined)
      editor.current?.open(path, path === undefined ? '' : textOf(files()[path]));
  };
  const run = (what: string, f: () => Promise<void> | void) => {
    setActionError('');
    void (async () => f())().catch((e: unknown) => setActionError((e as Error).message ?? `${what} failed`));
  };
  const openLocation = (l: FaultLocation) => {
    if (files()[l.file] === undefined) {
      setActionError(`open ${l.file}: no such file in this project`);
      return;
    }
    open(l.file);
    editor.current?.goTo(l.line ?? 1, l.column ?? 1);
  };
  const baseFolder = () => {
    const s = selected;
    if (!s) return '';
    if (folders.has(s) || pathsUnder(Object.keys(files()), s).some((x) => x !== s)) return `${s}/`;
    const i = s.lastIndexOf('/');
    return i < 0 ? '' : s.slice(0, i + 1);
  };
  const newFile = () => {
    const path = ask('New file path', baseFolder());
    if (!path) return;
    if (files()[path] !== undefined) throw new Error(`path: ${path} already exists`);
    store.write(path, '');
    open(path);
  };
  const newFolder = () => {
    const path = ask('New folder path', baseFolder());
    if (!path) return;
    setFolders((f) => new Set(f).add(path));
    setSelected(path);
  };
  const moveFolders = (from: string, to: string | undefined) =>
    setFolders((prev) => {
      const next = new Set<string>();
      for (const f of prev)
        if (f !== from && !f.startsWith(`${from}/`)) next.add(f);
        else if (to !== undefined) next.add(to + f.slice(from.length));
      return next;
    });
  const rename = () => {
    const from = selected;
    if (!from) throw new Error('rename: select a file or folder first');
    const to = ask(`Rename ${from} to`, from);
    if (!to || to === from) return;
    debouncer.flush();
    const moves = pathsUnder(Object.keys(files()), from).map((x) => [x, to + x.slice(from.length)] as const);
    for (const [, next] of moves)
      if (files()[next] !== undefined) throw new Error(`path: ${next} already exists`);
    for (const [x, next] of moves) store.rename(x, next);
    moveFolders(from, to);
    if (files()[to] !== undefined) open(to);
    else setSelected(to);
  };
  const remove = () => {
    const path = selected;
    if (!path) throw new Error('delete: select a file or folder first');
    if (!confirm(`Delete ${path}?`)) return;
    debouncer.flush();
    for (const x of pathsUnder(Object.keys(files()), path)) store.remove(x);
    moveFolders(path, undefined);
    open(firstFile(Object.keys(files())));
  };

  const shownId = session.previewId ?? project.knownPreviewId;
  (window as unknown as { editorPage: EditorPageGlobal }).editorPage = {
    preview: shownId ? { id: shownId, state: session.state, tier: session.tier } : undefined,
    session,
    get files() {
      return new Map(Object.entries(store.getSnapshot().files).map(([k, v]) => [k, textOf(v)]));
    },
    get cursor() {
      const e = editor.current;
      return e ? { path: e.path, ...e.cursor } : undefined;
    },
    openLocation,
  };
  const openFile = selected !== undefined && session.files[selected] !== undefined ? selected : '';

  return (
    <Shell
      header={p.header}
      actions={
        <Actions session={session} token={p.token} run={run} reload={() => mounted.current?.reload()} />
      }
      side={
        <>
          <div className="tools">
            <button type="button" id="new-file" title="New file" onClick={() => run('new file', newFile)}>
              + file
            </button>
            <button
              type="button"
              id="new-folder"
              title="New folder"
              onClick={() => run('new folder', newFolder)}
            >
              + folder
            </button>
            <button
              type="button"
              id="rename"
              title="Rename the selected file or folder"
              onClick={() => run('rename', rename)}
            >
              rename
            </button>
            <button
              type="button"
              id="delete"
              title="Delete the selected file or folder"
              onClick={() => run('delete', remove)}
            >
              delete
            </button>
          </div>
          <Tree files={session.files} folders={folders} selected={selected} select={open} />
        </>
      }
      code={
        <>
          <div id="path">{openFile}</div>
          <CodeMirror
            id="cm"
            editorRef={editor}
            onChange={(path, text) => debouncer.edit(path, text)}
            onReady={() => open(firstFile(Object.keys(files())))}
          />
        </>
      }
      preview={
        <PreviewPanel
          session={session}
          {...(project.mountOptions ? { mountOptions: project.mountOptions } : {})}
          onMounted={(m) => {
            mounted.current = m;
          }}
          onOpenLocation={openLocation}
        />
      }
      log={session.logs.join('\n')}
      status={
        <StatusBar
          view={statusOf(session, reasons.current, { note: p.note, actionError })}
          onOpenLocation={openLocation}
        />
      }
    />
  );
}
