/**
 * The small React editor the React binding's Chromium test drives (bundled with esbuild at test
 * time, React's development build so that StrictMode really double-mounts). Query: `token`,
 * `project` (projectId), `quick` (unmount right after the first mount), `browser` (offer the
 * bundler runtime: the project in `window.__files`, its vendor import map in `window.__vendor`).
 */
import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import type { MountedPreview } from '../src/mount.ts';
import {
  type FaultLocation,
  PreviewPanel,
  type PreviewSessionHandle,
  usePreviewSession,
} from '../src/react/index.ts';

const q = new URLSearchParams(location.search);

/** What the test reaches through `page.evaluate`. */
export interface TestApi {
  session: PreviewSessionHandle | undefined;
  setOpen(open: boolean): void;
  /** What the overlay's location button was clicked with (`onOpenLocation`). */
  opened: FaultLocation[];
  /** `onMounted`: a `MountedPreview` while the preview is shown. */
  mounted: MountedPreview | undefined;
}
const api: TestApi = { session: undefined, setOpen: () => {}, opened: [], mounted: undefined };
(globalThis as unknown as { __app: TestApi }).__app = api;

const page = globalThis as unknown as { __files?: Record<string, string>; __vendor?: Record<string, string> };
const SERVER_FILES: Record<string, string> = {
  'index.html':
    '<!doctype html><html><body><h1 id="msg">hello from the preview</h1><script src="/reload.js"></script></body></html>',
  // The local test tier's HMR socket says `update` on every applied edit: reload to show it.
  'reload.js':
    "new WebSocket('ws://' + location.host + '/__hmr').onmessage = (e) => { if (String(e.data).includes('update')) location.reload(); };",
};

const browser = q.has('browser');

function Editor() {
  const session = usePreviewSession({
    files: page.__files ?? SERVER_FILES,
    routerUrl: location.origin,
    token: q.get('token') ?? '',
    ...(browser ? { runtimes: { bundler: true } } : { serverOnly: true }),
    maxLogLines: 5,
    ...(q.get('project') ? { projectId: q.get('project')! } : {}),
  });
  api.session = session;
  return (
    <main>
      <p>
        state: <span id="state">{session.state}</span> · tier: <span id="tier">{session.tier ?? '-'}</span>
      </p>
      <pre id="logs">{session.logs.join('\n')}</pre>
      <div style={{ width: 640, height: 360 }}>
        <PreviewPanel
          session={session}
          mountOptions={{ bundler: { vendor: page.__vendor ?? {} } }}
          onOpenLocation={(l) => api.opened.push(l)}
          onMounted={(m) => {
            api.mounted = m;
          }}
        />
      </div>
    </main>
  );
}

function App() {
  const [open, setOpen] = useState(true);
  api.setOpen = setOpen;
  useEffect(() => {
    if (q.has('quick')) setOpen(false);
  }, []);
  return open ? <Editor /> : <p id="closed">editor closed</p>;
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
