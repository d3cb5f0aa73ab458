const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export type StatusKind =
  | 'queued'
  | 'installing'
  | 'compiling'
  | 'waking'
  | 'suspended'
  | 'error'
  | 'browser'
  | 'ended'
  | 'unauthorized'
  | 'not_found';

const TITLES: Record<StatusKind, string> = {
  queued: 'Preparing the preview…',
  installing: 'Installing dependencies…',
  compiling: 'Starting the dev server…',
  waking: 'Waking the preview up…',
  suspended: 'This preview is asleep: open or focus it to wake it up',
  error: 'The preview failed',
  browser: 'This preview runs in the editor',
  ended: 'This preview has ended',
  unauthorized: 'Open this preview from the editor',
  not_found: 'Preview not found',
};

/**
 * The page a preview origin serves while the app is not ready: never a blank frame. Live over SSE
 * (`/__router/events` on the same origin, cookie-authenticated); reloads itself once ready.
 */
export function statusPage(o: {
  kind: StatusKind;
  previewId: string;
  message?: string | undefined;
  log: string[];
  live: boolean;
}): string {
  const log = o.log.slice(-30).map(esc).join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><meta name="preview-status" content="${o.kind}">
<title>${esc(TITLES[o.kind])}</title>
<style>body{font:14px system-ui;margin:0;display:grid;place-items:center;min-height:100vh;background:#fafafa;color:#222}
main{max-width:42rem;width:90%}h1{font-size:1.2rem}pre{background:#111;color:#ddd;padding:.75rem;border-radius:6px;max-height:18rem;overflow:auto;font-size:12px}
.spin{display:inline-block;width:.8em;height:.8em;border:2px solid #999;border-top-color:transparent;border-radius:50%;animation:s 1s linear infinite;margin-right:.5em}
@keyframes s{to{transform:rotate(360deg)}}</style></head>
<body><main><h1 id="title">${o.live && o.kind !== 'error' ? '<span class="spin"></span>' : ''}<span id="t">${esc(TITLES[o.kind])}</span></h1>
<p id="msg">${esc(o.message ?? '')}</p><pre id="log">${log}</pre></main>
${
  o.live
    ? `<script>
const es = new EventSource('/__router/events');
const t = document.getElementById('t'), logEl = document.getElementById('log'), msg = document.getElementById('msg');
const titles = ${JSON.stringify(TITLES)};
// The last state seen: a dev server's 'ready' reloads the page only while the preview is not asleep
// or going away (a reload is a page view, which would wake a preview just suspended).
let state = null;
es.addEventListener('state', (ev) => { const d = JSON.parse(ev.data); state = d.state;
  if (d.state === 'ready') { es.close(); location.reload(); }
  else if (d.state === 'failed') { t.textContent = titles.error; msg.textContent = d.error || ''; }
  else if (d.state === 'ended') { t.textContent = titles.ended; es.close(); } });
es.addEventListener('status', (ev) => { const d = JSON.parse(ev.data);
  if (d.phase === 'ready' && !['suspended', 'stopping', 'ended', 'failed', 'migrating'].includes(state)) { es.close(); location.reload(); return; }
  t.textContent = d.phase === 'installing' ? titles.installing : d.phase === 'error' ? titles.error : titles.compiling;
  if (d.message) msg.textContent = d.message; });
es.addEventListener('log', (ev) => { const d = JSON.parse(ev.data);
  logEl.textContent = (logEl.textContent + '\\n' + d.lines.join('\\n')).split('\\n').slice(-30).join('\\n');
  logEl.scrollTop = logEl.scrollHeight; });
</script>`
    : ''
}</body></html>`;
}
