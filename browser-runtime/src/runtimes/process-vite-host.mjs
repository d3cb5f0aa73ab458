/**
 * The child process `ProcessRuntime` runs: the project's own Vite, started through its API so
 * that the runtime can tell it which files it wrote (plain ESM, no loader needed).
 *
 * Why: Vite learns of edits from chokidar, which on Linux watches each file's inode. A file
 * replaced by rename is watched again only after chokidar's own `stat` of it; a second write that
 * lands in that window (two quick edits, or one while the process is starved of CPU) produces no
 * event, and Vite serves the previous version until the next edit. So the runtime announces every
 * write here, over IPC, and waits for the module graph to be invalidated before its `writeFile`
 * resolves; the watcher's own event for an announced file is then dropped as a duplicate.
 *
 * argv: `<vite module URL> <port> <host> <tmp dir name> [head script]`; cwd is the project root.
 * The head script, when given, is put first in the `<head>` of every HTML page Vite serves.
 * IPC in: `{ id, files: [{ path, event: 'add' | 'change' | 'unlink' }] }` (absolute paths).
 * IPC out: `{ ready: url }` once listening, `{ ack: id }` once the files are invalidated.
 */
const [viteUrl, port, host, tmpDirName, headScript] = process.argv.slice(2);
/** How long after an announcement the watcher's own event for that file is a duplicate (ms). */
const DUPLICATE_WINDOW_MS = 2_000;

const { createServer } = await import(viteUrl);
const server = await createServer({
  root: process.cwd(),
  clearScreen: false,
  // Its own optimized-deps cache: the project's node_modules may be shared (a link to an installed
  // copy), and Vite servers with different configs re-optimizing into one cache undo each other.
  cacheDir: `${tmpDirName}/vite`,
  plugins: headScript
    ? [
        {
          name: 'preview-host-head-script',
          transformIndexHtml: {
            order: 'pre',
            handler: () => [{ tag: 'script', children: headScript, injectTo: 'head-prepend' }],
          },
        },
      ]
    : [],
  server: {
    port: Number(port),
    strictPort: true,
    host,
    // The runtime's temp files are renamed over their targets; the watcher need not see them.
    watch: { ignored: [`**/${tmpDirName}/**`] },
  },
});

const announced = new Map();
const watcher = server.watcher;
const emit = watcher.emit.bind(watcher);
watcher.emit = (event, ...args) => {
  if ((event === 'change' || event === 'add' || event === 'unlink') && typeof args[0] === 'string') {
    const at = announced.get(args[0]);
    if (at !== undefined) {
      announced.delete(args[0]);
      if (performance.now() - at < DUPLICATE_WINDOW_MS) return true;
    }
  }
  return emit(event, ...args);
};

process.on('message', (msg) => {
  const now = performance.now();
  for (const { path, event } of msg.files) {
    // What Vite's own 'change' handler does first (after its plugins' watchChange), done here
    // synchronously so that a request after the ack never gets the cached transform.
    if (event === 'change')
      for (const env of Object.values(server.environments)) env.moduleGraph.onFileChange(path);
    emit(event, path);
    announced.set(path, now);
  }
  process.send({ ack: msg.id });
});

let closing = false;
const close = () => {
  if (closing) return;
  closing = true;
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', close);
// The runtime went away without tearing down: do not outlive it.
process.on('disconnect', close);

await server.listen();
process.send({ ready: server.resolvedUrls?.local[0] ?? `http://${host}:${port}/` });
