/**
 * `npm run bench -- daemon [--edits N] [--template vite-react]`: one preview-daemon container from
 * the preview-base image with the pool agent's hardening (read-only root, tmpfs, no capabilities),
 * measured on its own (no agent, no router):
 * - idle memory by cgroup accounting (`memory.stat` rss, i.e. anonymous memory; page cache left
 *   out), before any page load and again after Chromium loaded the app and N edits went through;
 * - the daemon-internal edit → HMR-sent time: N one-file edits over the sync socket, the `hmr`
 *   frame's `ms` (batch frame received → Vite handed the update to its HMR socket), with the page
 *   open in Chromium so the update has a real client.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from '@preview/testkit';
import { DAEMON_PORT } from '@preview/tiers';
import Docker from 'dockerode';
import WebSocket from 'ws';
import { percentile, round1 } from './stats.ts';

const IMAGE = process.env['PREVIEW_IMAGE'] ?? 'preview-base:dev';
const templates = join(import.meta.dirname, '../../templates');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cgroupRssMiB(id: string): number {
  for (const base of [
    `/sys/fs/cgroup/memory/docker/${id}`,
    `/sys/fs/cgroup/system.slice/docker-${id}.scope`,
  ]) {
    try {
      const stat = readFileSync(`${base}/memory.stat`, 'utf8');
      const m = /^(?:rss|anon) (\d+)$/m.exec(stat);
      if (m) return Number(m[1]) / 1024 / 1024;
    } catch {}
  }
  return Number.NaN;
}

export default async function daemon(args: string[]): Promise<object> {
  const arg = (name: string, dflt: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1]! : dflt;
  };
  const edits = Number(arg('--edits', '40'));
  const template = arg('--template', 'vite-react');
  const token = randomBytes(24).toString('hex');
  const docker = new Docker({ socketPath: process.env['DOCKER_SOCKET'] ?? '/var/run/docker.sock' });
  const c = await docker.createContainer({
    Image: IMAGE,
    Env: [`PREVIEW_TEMPLATE=${template}`, `PREVIEW_DAEMON_TOKEN=${token}`],
    Labels: { 'preview.bench': 'daemon' },
    ExposedPorts: { [`${DAEMON_PORT}/tcp`]: {} },
    Volumes: { '/project': {} },
    HostConfig: {
      // As the pool agent runs sandboxes (pool-agent/src/runtime/docker.ts): one CPU, an init.
      Init: true,
      NanoCpus: 1e9,
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=256m' },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      Memory: 512 * 1024 * 1024,
      MemorySwap: 512 * 1024 * 1024,
      PortBindings: { [`${DAEMON_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
    },
  });
  const chrome = await launchChromium();
  try {
    const t0 = Date.now();
    await c.start();
    const port = Number((await c.inspect()).NetworkSettings.Ports[`${DAEMON_PORT}/tcp`]?.[0]?.HostPort);
    for (;;) {
      const r = await fetch(`http://127.0.0.1:${port}/__preview/health`).catch(() => undefined);
      if (r?.status === 200) break;
      if (Date.now() - t0 > 120_000) throw new Error('daemon not ready');
      await sleep(50);
    }
    const startToReadyMs = Date.now() - t0;
    await sleep(8000); // idle (the daemon collects garbage 5 s after activity)
    const idleNoPage = cgroupRssMiB(c.id);

    const page = await chrome.context.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.getByTestId('title').waitFor();
    const ws = new WebSocket(`ws://127.0.0.1:${port}/__preview/sync?token=${token}`);
    await new Promise((r) => ws.once('open', r));
    const pending = new Map<number, (ms: number) => void>();
    ws.on('message', (d) => {
      const f = JSON.parse(String(d)) as { type: string; seq?: number; ms?: number };
      if (f.type === 'hmr' && f.seq !== undefined) pending.get(f.seq)?.(f.ms ?? Number.NaN);
    });
    const file = template === 'vite-react' ? 'src/App.jsx' : 'src/message.js';
    const original = readFileSync(join(templates, template, file), 'utf8');
    const sample: number[] = [];
    for (let seq = 1; seq <= edits; seq++) {
      const got = new Promise<number>((resolve) => pending.set(seq, resolve));
      const content =
        template === 'vite-react'
          ? original.replace('Vite React preview', `Edit ${seq}`)
          : `export const message = 'edit ${seq}';\n`;
      ws.send(JSON.stringify({ type: 'batch', seq, ops: [{ op: 'put', path: file, content }] }));
      const ms = await Promise.race([got, sleep(10_000).then(() => Number.NaN)]);
      if (Number.isFinite(ms)) sample.push(ms);
      await sleep(100);
    }
    ws.close();
    await sleep(8000);
    const idleAfterPage = cgroupRssMiB(c.id);
    return {
      template,
      image: IMAGE,
      start_to_ready_ms: startToReadyMs,
      idle_rss_mib_no_page: round1(idleNoPage),
      idle_rss_mib_after_page_and_edits: round1(idleAfterPage),
      edits,
      hmr_reported: sample.length,
      hmr_p50_ms: round1(percentile(sample, 50)),
      hmr_p99_ms: round1(percentile(sample, 99)),
    };
  } finally {
    await chrome.close();
    await c.remove({ force: true, v: true }).catch(() => {});
  }
}
