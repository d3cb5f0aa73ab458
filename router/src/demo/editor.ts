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
const log = (m) => { $('status').textContent = m; };
$('create').onclick = async () => {
  files[current] = $('code').value; localStorage.setItem('previewToken', $('token').value);
  try {
    preview = await api('/v1/previews', { method: 'POST', body: JSON.stringify({ files, template: 'vite-vanilla', serverOnly: true }), headers: { 'idempotency-key': crypto.randomUUID() } });
    log(preview.state + ' on ' + preview.tier + '\\n' + preview.reasons.map((r) => r.tier + ': ' + r.outcome + ' — ' + r.reason).join('\\n'));
    if (preview.previewUrl) $('frame').src = preview.previewUrl;
    $('save').disabled = false;
    const es = new EventSource('/v1/previews/' + preview.id + '/events?access_token=' + encodeURIComponent($('token').value));
    es.addEventListener('state', (e) => { const d = JSON.parse(e.data); log(d.state + (d.error ? ': ' + d.error : '')); });
  } catch (e) { log('create failed: ' + e.message); }
};
$('save').onclick = async () => {
  files[current] = $('code').value;
  try {
    const r = await api('/v1/previews/' + preview.id + '/files', { method: 'PUT', body: JSON.stringify({ type: 'batch', seq: ++seq, ops: [{ op: 'put', path: current, content: files[current] }] }) });
    log('saved, ack seq ' + r.applied.seq);
  } catch (e) { log('save failed: ' + e.message); }
};
</script></body></html>`;
