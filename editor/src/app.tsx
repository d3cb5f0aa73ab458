import { PreviewClient } from '@preview/browser-runtime';
import type { ProjectFiles } from '@preview/tiers';
import { type ReactNode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { type PickedFile, pickDirectory, pickedFromInput, projectFromFolder } from './folder.ts';
import { StatusBar } from './status.tsx';
import { Actions, type OpenProject, PROJECT_KEY, type SavedProject, Shell, Workspace } from './workspace.tsx';

const TOKEN_KEY = 'preview.token';

/** A template as `GET /v1/templates` lists it. */
export interface Template {
  name: string;
  files: ProjectFiles;
}

/** The token from the link `npm start` prints (`/#token=...`, then removed from the address bar), else the kept one. */
function initialToken(): string {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    localStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return fromHash ?? localStorage.getItem(TOKEN_KEY) ?? '';
}

const newKey = () => crypto.randomUUID();

/**
 * The editor page: token, template picker, "open a folder", the open project (`Workspace`), and
 * restoring the last project on load.
 */
export function App(): ReactNode {
  const [token, setToken] = useState(initialToken);
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const client = useMemo(
    () => new PreviewClient({ baseUrl: location.origin, token: () => tokenRef.current.trim() }),
    [],
  );
  const [templates, setTemplates] = useState<Template[]>([]);
  const [template, setTemplate] = useState('');
  const [inBrowser, setInBrowser] = useState(false);
  const [serverOnly, setServerOnly] = useState(false);
  const [project, setProject] = useState<OpenProject | undefined>(undefined);
  const [note, setNote] = useState('');
  const [error, setError] = useState('');
  const folderInput = useRef<HTMLInputElement>(null);

  /**
   * What this tab offers to run (`client` of the create): the bundler runtime whenever the router
   * hosts it on its runtime origin (`GET /v1/runtime-host`; `mountPreview` runs it there, never on
   * this page's origin), and WebContainers when the user opts in and the page is cross-origin
   * isolated. A frontend-only project is then placed on the browser tier unless "server tier only".
   */
  const runtimes = async () => ({
    webcontainer: inBrowser && crossOriginIsolated,
    bundler: !!(await client.runtimeHost().catch(() => undefined)),
  });

  const guard = useCallback(async (f: () => Promise<void>) => {
    setError('');
    try {
      await f();
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);

  // Templates, then the last project (once per token: the restore reads the options as they are then).
  // biome-ignore lint/correctness/useExhaustiveDependencies: once per token
  useEffect(() => {
    if (!token.trim()) {
      setNote('paste an access token (npm start prints a link with one)');
      return;
    }
    let cancelled = false;
    void guard(async () => {
      const res = await fetch('/v1/templates', { headers: { authorization: `Bearer ${token.trim()}` } });
      const body = (await res.json().catch(() => null)) as {
        templates?: Template[];
        error?: { message?: string };
      } | null;
      if (!res.ok) throw new Error(`GET /v1/templates: ${body?.error?.message ?? res.status}`);
      if (cancelled) return;
      const list = body?.templates ?? [];
      setTemplates(list);
      setTemplate((t) => t || list[0]?.name || '');
      const saved = JSON.parse(localStorage.getItem(PROJECT_KEY) ?? 'null') as SavedProject | null;
      if (!saved) return;
      setNote('restoring the last project…');
      try {
        await client.get(saved.previewId);
        const files = await client.files(saved.previewId);
        if (cancelled) return;
        if (saved.template) setTemplate(saved.template);
        setNote('');
        setProject({
          key: newKey(),
          projectId: saved.projectId,
          template: saved.template || undefined,
          files,
          knownPreviewId: saved.previewId,
          runtimes: await runtimes(),
          serverOnly: false,
        });
      } catch (e) {
        // Another user's token, or the project is gone: start afresh.
        if ((e as { code?: string }).code !== 'not_found') throw e;
        localStorage.removeItem(PROJECT_KEY);
        setNote('the last project is not there any more: pick a template');
      }
    });
    return () => {
      cancelled = true;
    };
  }, [token]);

  const open = async (files: ProjectFiles, name: string | undefined, what: string) => {
    const offered = await runtimes();
    setNote(what);
    setProject({
      key: newKey(),
      projectId: `p-${crypto.randomUUID()}`,
      template: name,
      files,
      runtimes: offered,
      serverOnly,
    });
  };

  const create = () =>
    guard(async () => {
      const t = templates.find((x) => x.name === template);
      if (!t) throw new Error('template: pick one of the list');
      await open(t.files, t.name, '');
    });

  /** A project from a folder: its files checked with the router's rules, then created (template detected). */
  const fromFolder = async (picked: PickedFile[], skipped: number, name: string) => {
    const r = await projectFromFolder(picked);
    if (r.problems.length)
      throw new Error(
        `open folder: ${r.problems.length} problem(s), nothing created: ${r.problems.slice(0, 5).join('; ')}`,
      );
    const left = skipped + r.skipped;
    await open(
      r.files,
      undefined,
      `opened folder ${name}: ${Object.keys(r.files).length} files${left ? ` (${left} skipped: node_modules, .git)` : ''}`,
    );
  };

  const openFolder = () =>
    guard(async () => {
      let picked: Awaited<ReturnType<typeof pickDirectory>>;
      try {
        picked = await pickDirectory();
      } catch (e) {
        if ((e as DOMException).name === 'AbortError') return;
        throw e;
      }
      if (!picked) return folderInput.current?.click();
      await fromFolder(picked.picked, picked.skipped, 'picked');
    });

  const onFolderInput = (list: FileList | null) =>
    guard(async () => {
      if (!list?.length) return;
      const first = list[0]?.webkitRelativePath.split('/')[0] ?? 'folder';
      await fromFolder(pickedFromInput(list), 0, first);
      if (folderInput.current) folderInput.current.value = '';
    });

  const header = (
    <>
      <label>
        Token{' '}
        <input
          id="token"
          type="password"
          autoComplete="off"
          placeholder="access token"
          defaultValue={token}
          onChange={(e) => {
            localStorage.setItem(TOKEN_KEY, e.target.value.trim());
          }}
          onBlur={(e) => setToken(e.target.value)}
        />
      </label>
      <label>
        Template{' '}
        <select id="template" value={template} onChange={(e) => setTemplate(e.target.value)}>
          {templates.map((t) => (
            <option key={t.name} value={t.name}>
              {t.name}
            </option>
          ))}
        </select>
      </label>
      <label title="Also offer WebContainers (they load from StackBlitz: online only; if they do not boot, the preview moves to a server tier). The bundler runtime is offered whenever the router hosts it.">
        <input
          id="in-browser"
          type="checkbox"
          checked={inBrowser}
          onChange={(e) => setInBrowser(e.target.checked)}
        />{' '}
        run in this browser
      </label>
      <label title="Ask for a server tier even when this browser could run the project">
        <input
          id="server-only"
          type="checkbox"
          checked={serverOnly}
          onChange={(e) => setServerOnly(e.target.checked)}
        />{' '}
        server tier only
      </label>
      <button type="button" id="create" onClick={() => void create()}>
        New project
      </button>
      <button
        type="button"
        id="open-folder"
        title="Open a folder of your computer as a new project (node_modules and .git are left out)"
        onClick={() => void openFolder()}
      >
        Open folder
      </button>
      <input
        id="open-folder-input"
        type="file"
        hidden
        multiple
        {...{ webkitdirectory: '' }}
        onChange={(e) => void onFolderInput(e.target.files)}
        ref={folderInput}
      />
    </>
  );

  if (project)
    return (
      <Workspace
        key={project.key}
        project={project}
        client={client}
        token={() => tokenRef.current.trim()}
        header={header}
        note={error ? `error: ${error}` : note}
      />
    );
  return (
    <Shell
      header={header}
      actions={<Actions />}
      side={<ul id="tree" />}
      code={<div id="path" />}
      preview={null}
      log=""
      status={
        <StatusBar
          view={{
            state: '',
            tier: null,
            node: '',
            reasons: [],
            phase: '',
            error: error ? { text: error } : null,
            sync: '',
            updateMs: undefined,
            updateKind: '',
            note,
          }}
        />
      }
    />
  );
}
