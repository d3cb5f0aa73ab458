/**
 * `npm run bench -- deps [--runs N]`: adding one small dependency to a running vite-react preview →
 * the app loads with it. Each run claims a warm vite-react preview (the template's own files), then
 * applies one batch that adds `ms` to package.json and imports it in `src/App.jsx`, and times until
 * the app's module graph serves it: `src/App.jsx` answers 200 importing the pre-bundled `ms`, and that
 * module answers 200 (what the page's next load fetches). The install runs in the sandbox through its
 * npm cache overlay over the node's (the image's) cache; `ms` itself is not in the node cache, so each
 * run also fetches its metadata and tarball from the registry (through this machine's proxy).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { claimAndLoad, startBenchAgent } from './_agent.ts';
import { percentile, round1 } from './stats.ts';

const TEMPLATE = join(import.meta.dirname, '../../templates/vite-react');

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

/** The vite-react template's files (what a user starts from), with a marker in App.jsx. */
function project(marker: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(TEMPLATE, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      if (name === 'node_modules') continue;
      if (statSync(join(TEMPLATE, path)).isDirectory()) walk(path);
      else files[path] = readFileSync(join(TEMPLATE, path), 'utf8');
    }
  };
  walk('');
  files['src/App.jsx'] = files['src/App.jsx']!.replace('Vite React preview', marker);
  return files;
}

export default async function deps(args: string[]): Promise<object> {
  const runs = flag(args, 'runs', 5);
  const b = await startBenchAgent({
    WARM_POOL: 'vite-react=1',
    NODE_SLOTS: '3',
    PREVIEW_MEMORY_MIB: '1024',
    PREVIEW_NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
  });
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      await b.agent.pools.populate();
      await b.agent.pools.settled();
      const id = `pdeps${randomBytes(5).toString('hex')}`;
      const marker = `deps-${i}-${randomBytes(3).toString('hex')}`;
      const files = project(marker);
      await claimAndLoad(b, id, marker, { template: 'vite-react', files, path: '/src/App.jsx' });
      const upstream = `${b.agent.url}/v1/previews/${id}/http`;
      const headers = { 'x-agent-token': b.token };
      const pkg = JSON.parse(files['package.json']!);
      pkg.dependencies.ms = '2.1.3';
      const app = `import ms from 'ms';\n${files['src/App.jsx']!.replace(`${marker}</h1>`, `${marker} {ms(90000)}</h1>`)}`;
      const t0 = performance.now();
      const ack = await fetch(`${b.agent.url}/v1/previews/${id}/apply`, {
        method: 'POST',
        headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          type: 'batch',
          seq: 1,
          ops: [
            { op: 'put', path: 'package.json', content: JSON.stringify(pkg, null, 2) },
            { op: 'put', path: 'src/App.jsx', content: app },
          ],
        }),
      });
      if (!ack.ok) throw new Error(`apply answered ${ack.status}: ${await ack.text()}`);
      const deadline = Date.now() + 120_000;
      for (;;) {
        if (Date.now() > deadline) throw new Error(`run ${i}: the app did not load ms within 120 s`);
        const res = await fetch(`${upstream}/src/App.jsx`, { headers }).catch(() => undefined);
        const text = res?.ok ? await res.text() : '';
        const dep = /from\s+"([^"]*deps\/ms\.js[^"]*)"/.exec(text)?.[1];
        if (dep && (await fetch(`${upstream}${dep}`, { headers }).catch(() => undefined))?.ok) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      times.push(performance.now() - t0);
      process.stderr.write(`run ${i}: ${Math.round(times.at(-1)!)} ms\n`);
      await b.agent.destroy(id);
    }
  } finally {
    await b.stop();
  }
  return {
    runs,
    dependency: 'ms@2.1.3',
    add_dependency_p50_ms: round1(percentile(times, 50)),
    add_dependency_max_ms: round1(Math.max(...times)),
    goal_p50_ms: 5000,
  };
}
