import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { HmrTracker } from './hmr-tracker.ts';
import { packageDir } from './load-package.ts';

/** Next's HMR messages that mean "an update went out to the browsers". */
export const NEXT_UPDATES = new Set([
  'built',
  'sync',
  'serverComponentChanges',
  'clientChanges',
  'serverOnlyChanges',
]);

/**
 * What a message on Next's HMR socket means for the tracker: `update` (a build went out),
 * `full-reload` (`reloadPage`), or `undefined` (anything else, or not JSON).
 */
export function nextHmrEvent(data: string): 'update' | 'full-reload' | undefined {
  let msg: { action?: string; type?: string };
  try {
    msg = JSON.parse(data);
  } catch {
    return undefined;
  }
  const action = msg.action ?? msg.type;
  if (action && NEXT_UPDATES.has(action)) return 'update';
  if (action === 'reloadPage') return 'full-reload';
  return undefined;
}

/** Next 16 serves its HMR socket at /_next/hmr; earlier releases at /_next/webpack-hmr. */
export function nextHmrPath(projectDir: string): string {
  try {
    const { version } = JSON.parse(
      readFileSync(join(packageDir(projectDir, 'next'), 'package.json'), 'utf8'),
    );
    return Number(String(version).split('.')[0]) >= 16 ? '/_next/hmr' : '/_next/webpack-hmr';
  } catch {
    return '/_next/hmr';
  }
}

/** What {@link NextHmrWatcher} needs. */
export interface NextHmrContext {
  projectDir: string;
  tracker: Pick<HmrTracker, 'sent'>;
  /** `host:port` of the running app. */
  appHost: () => string;
  /** Whether the app runs and is not being stopped (else the watcher does not (re)connect). */
  active: () => boolean;
}

/**
 * Next's browser HMR socket: the daemon listens as one more client to learn when a build went out,
 * and reconnects a second after the socket closes while the app runs.
 */
export class NextHmrWatcher {
  readonly #ctx: NextHmrContext;
  #socket: WebSocket | undefined;

  constructor(ctx: NextHmrContext) {
    this.#ctx = ctx;
  }

  watch(): void {
    if (!this.#ctx.active()) return;
    const ws = new WebSocket(`ws://${this.#ctx.appHost()}${nextHmrPath(this.#ctx.projectDir)}`);
    this.#socket = ws;
    ws.on('message', (data) => {
      const event = nextHmrEvent(String(data));
      if (event) this.#ctx.tracker.sent(event, true);
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (this.#socket === ws && this.#ctx.active()) setTimeout(() => this.watch(), 1000).unref();
    });
  }

  close(): void {
    this.#socket?.close();
  }
}
