import { createServer } from 'node:http';

// Placeholder: answers the health route so the image can be built and checked end to end.
// The real daemon (file sync, dev-server supervision, HMR reporting) replaces this entry point.
const port = Number(process.env['PREVIEW_DAEMON_PORT'] ?? 3000);
const server = createServer((req, res) => {
  if (req.url === '/__preview/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, node: process.version, uid: process.getuid?.() }));
    return;
  }
  res.writeHead(404).end();
});
server.listen(port, '0.0.0.0');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
