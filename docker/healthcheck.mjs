// HEALTHCHECK of the router and pool-agent images: GET http://<host>:<port><path> and exit 0 when
// the service answers below 500 (the agent's routes all need a token, so its 401 means "up").
// Usage: node healthcheck.mjs <HOST variable> <PORT variable> <default port> <path>
// A wildcard listen address (0.0.0.0, ::) is probed on loopback.
const [hostVar, portVar, defaultPort, path] = process.argv.slice(2);
const listen = process.env[hostVar] || '127.0.0.1';
const host = listen === '0.0.0.0' || listen === '::' ? '127.0.0.1' : listen;
const port = process.env[portVar] || defaultPort;
const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
fetch(url, { signal: AbortSignal.timeout(4000) }).then(
  (r) => process.exit(r.status < 500 ? 0 : 1),
  () => process.exit(1),
);
