/** A minimal editor page: create a preview from a few files, show it in an iframe, push edits. */
export const DEMO_EDITOR_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Preview demo editor</title>
<style>body{font:14px system-ui;margin:0;display:grid;grid-template-columns:40% 60%;height:100vh}
#left{display:flex;flex-direction:column;padding:.5rem;gap:.4rem;border-right:1px solid #ddd}
textarea{flex:1;font:12px ui-monospace,monospace}iframe{width:100%;height:100%;border:0}
#status{font-size:12px;color:#555;white-space:pre-wrap}</style></head>
<body><div id="left">
<label>Access token <input id="token" style="width:100%"></label>
<label>File <select id="file"></select></label>
<textarea id="code" spellcheck="false"></textarea>
<div><button id="create">Create preview</button> <button id="save" disabled>Save (push edit)</button></div>
<div id="status"></div></div>
<iframe id="frame" title="preview"></iframe>
<script>
// Same package.json as the vite-vanilla template (the warm sandboxes' dependencies), so a claim
// writes only these files and installs nothing.
const files = {
  'index.html': '<!doctype html><html lang="en"><body><h1 id="h">Hello from the preview</h1><script type="module" src="/src/main.js"><\\/script></body></html>',
  'src/main.js': "import './style.css';\\ndocument.getElementById('h').textContent = 'Hello, edited ' + new Date().toLocaleTimeString();\\n",
  'src/style.css': 'h1 { font-family: system-ui; color: #0a7; }\\n',
};
const $ = (id) => document.getElementById(id);
const hash = new URLSearchParams(location.hash.slice(1));
$('token').value = hash.get('token') || localStorage.getItem('previewToken') || '';
for (const f of Object.keys(files)) $('file').append(new Option(f, f));
let current = 'src/main.js'; $('code').value = files[current];
$('file').onchange = () => { files[current] = $('code').value; current = $('file').value; $('code').value = files[current]; };
let preview, seq = 0;
const api = (path, init = {}) => fetch(path, { ...init, headers: { 'content-type': 'application/json', authorization: 'Bearer ' + $('token').value, ...(init.headers || {}) } })
  .then(async (r) => { const b = r.status === 204 ? null : await r.json(); if (!r.ok) throw new Error(b?.error?.message || r.status); return b; });
// What the status box shows: the create's state and tier, its placement reasons (kept when later
// events come), the sandbox's status, the error, and the last log lines, all as they come over SSE.
const view = { state: '', tier: null, reasons: [], status: '', error: '', lines: [], note: '' };
const render = () => {
  const out = [];
  if (view.state) out.push('state: ' + view.state + (view.tier ? ' on ' + view.tier : ''));
  if (view.status) out.push('status: ' + view.status);
  if (view.error) out.push('error: ' + view.error);
  if (view.reasons.length)
    out.push('placement:\\n' + view.reasons.map((r) => '  ' + r.tier + ': ' + r.outcome + ' — ' + r.reason).join('\\n'));
  if (view.lines.length) out.push('log:\\n' + view.lines.slice(-12).join('\\n'));
  if (view.note) out.push(view.note);
  $('status').textContent = out.join('\\n');
};
const log = (m) => { view.note = m; render(); };
let es, ticking;
const follow = (id) => {
  es?.close();
  es = new EventSource('/v1/previews/' + id + '/events?access_token=' + encodeURIComponent($('token').value));
  es.addEventListener('state', (e) => {
    const d = JSON.parse(e.data);
    view.state = d.state;
    if (d.tier !== undefined) view.tier = d.tier;
    view.error = d.error || '';
    view.note = '';
    render();
    if (['failed', 'ended'].includes(d.state)) { es.close(); $('create').disabled = false; }
    if (d.state === 'ready') $('create').disabled = false;
  });
  es.addEventListener('status', (e) => {
    const d = JSON.parse(e.data);
    view.status = d.phase + (d.message ? ': ' + d.message : '');
    render();
  });
  es.addEventListener('log', (e) => {
    view.lines.push(...JSON.parse(e.data).lines);
    view.lines = view.lines.slice(-50);
    render();
  });
  es.onerror = () => { if (es.readyState !== EventSource.CLOSED) log('event stream interrupted, reconnecting…'); };
};
$('create').onclick = async () => {
  files[current] = $('code').value; localStorage.setItem('previewToken', $('token').value);
  es?.close(); clearInterval(ticking);
  Object.assign(view, { state: 'creating', tier: null, reasons: [], status: '', error: '', lines: [], note: '' });
  $('create').disabled = true;
  const t0 = Date.now();
  const tick = () => log('placing on a tier… ' + Math.round((Date.now() - t0) / 1000) + ' s');
  tick(); ticking = setInterval(tick, 1000);
  try {
    preview = await api('/v1/previews', { method: 'POST', body: JSON.stringify({ files, template: 'vite-vanilla', serverOnly: true }), headers: { 'idempotency-key': crypto.randomUUID() } });
    clearInterval(ticking);
    Object.assign(view, { state: preview.state, tier: preview.tier, reasons: preview.reasons || [], error: preview.error || '', note: '' });
    render();
    if (preview.previewUrl) $('frame').src = preview.previewUrl;
    $('save').disabled = preview.state === 'failed';
    if (preview.state === 'failed') $('create').disabled = false;
    follow(preview.id);
  } catch (e) {
    clearInterval(ticking);
    Object.assign(view, { state: 'create failed', error: e.message, note: '' });
    render();
    $('create').disabled = false;
  }
};
$('save').onclick = async () => {
  files[current] = $('code').value;
  try {
    const r = await api('/v1/previews/' + preview.id + '/files', { method: 'PUT', body: JSON.stringify({ type: 'batch', seq: ++seq, ops: [{ op: 'put', path: current, content: files[current] }] }) });
    log('saved, ack seq ' + r.applied.seq);
  } catch (e) { log('save failed: ' + e.message); }
};
</script></body></html>`;
