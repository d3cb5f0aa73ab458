import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import { type Output, paint, printJson, println } from '../output.ts';
import {
  settled,
  templateTotals,
  type UpEvent,
  UpProgress,
  type UpState,
  warmTotals,
} from '../up/progress.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** The embedded mode's entry: exactly what `npm start` runs. */
export const ROUTER_MAIN = fileURLToPath(new URL('router/src/main.ts', `file://${REPO}`));

/** The "ready" block as text lines: URL, health, API reference, token and editor. */
export function readyLines(s: UpState): string[] {
  const r = s.ready;
  if (!r) return [];
  const lines = [
    `Preview router ready at ${r.url}`,
    `  health: ${r.url}/readyz`,
    `  API reference: ${r.url}/docs`,
  ];
  if (s.runtime) lines.push(`  previews run ${s.runtime === 'docker' ? 'in Docker' : 'as host processes'}`);
  if (r.token) {
    lines.push(`  local access token (user ${r.userId ?? '?'}):`, `  ${r.token}`);
    lines.push(`  use it: export PREVIEW_URL=${r.url} PREVIEW_TOKEN=${r.token}`);
  }
  if (r.editorUrl) lines.push(`  demo editor: ${r.editorUrl}`);
  return lines;
}

/** The one `--json` document of `preview up`, printed once the router is ready. */
export function readyDocument(s: UpState) {
  return {
    ...s.ready,
    runtime: s.runtime ?? null,
    templates: s.templates,
    warm: s.warm,
    problems: s.problems,
  };
}

/** Renders progress: bars on a terminal, one line per change in plain output, nothing with `--json`. */
interface Renderer {
  update(e: UpEvent, s: UpState): void;
  stop(): void;
}

function barsRenderer(o: Output): Renderer {
  const multi = new MultiBar(
    {
      stream: o.err as NodeJS.WriteStream,
      format: ' {name} [{bar}] {value}/{total} {detail}',
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
      forceRedraw: true,
    },
    Presets.shades_classic,
  );
  let templates: SingleBar | undefined;
  let warm: SingleBar | undefined;
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    multi.stop();
  };
  return {
    update(e, s) {
      if (stopped) {
        if (e.kind === 'problem' || e.kind === 'log') o.err.write(`${e.line}\n`);
        if (e.kind === 'ready') for (const l of readyLines(s)) println(o, l);
        return;
      }
      if (e.kind === 'step') multi.log(`${paint(o, 'dim', `• ${e.step}`)}\n`);
      if (e.kind === 'problem') multi.log(`${paint(o, 'yellow', e.line)}\n`);
      if (e.kind === 'templates') {
        const t = templateTotals(s);
        templates ??= multi.create(t.total, 0, { name: 'templates ', detail: '' });
        templates.setTotal(t.total);
        templates.update(t.done, { detail: t.current ? `installing ${t.current}` : '' });
      }
      if (e.kind === 'warm') {
        const w = warmTotals(s);
        if (w.target === 0) return;
        warm ??= multi.create(w.target, 0, { name: 'warm pools', detail: '' });
        warm.setTotal(w.target);
        const filling = Object.entries(s.warm)
          .filter(([, v]) => v.ready < v.target)
          .map(([t]) => t);
        warm.update(w.ready, { detail: filling.length ? `filling ${filling.join(', ')}` : 'full' });
      }
      if (e.kind === 'ready') multi.log(`${readyLines(s).join('\n')}\n`);
      if (settled(s)) stop();
    },
    stop,
  };
}

function plainRenderer(o: Output): Renderer {
  let lastWarm = '';
  return {
    update(e, s) {
      if (e.kind === 'step') println(o, `• ${e.step}`);
      if (e.kind === 'problem' || e.kind === 'log') o.err.write(`${e.line}\n`);
      if (e.kind === 'templates') {
        const t = templateTotals(s);
        println(
          o,
          `templates: ${t.done}/${t.total} installed${t.current ? `, installing ${t.current}` : ''}`,
        );
      }
      if (e.kind === 'warm') {
        const w = warmTotals(s);
        const line = `warm pools: ${w.ready}/${w.target} ready`;
        if (w.target > 0 && line !== lastWarm) println(o, line);
        lastWarm = line;
      }
      if (e.kind === 'ready') for (const l of readyLines(s)) println(o, l);
    },
    stop() {},
  };
}

function jsonRenderer(o: Output): Renderer {
  let printed = false;
  return {
    update(e, s) {
      if (e.kind === 'ready' && !printed) {
        printed = true;
        printJson(o, readyDocument(s));
      }
    },
    stop() {},
  };
}

/**
 * `preview up`: the embedded mode (router/src/main.ts, what `npm start` runs: embedded Postgres
 * unless DATABASE_URL, the in-process pool agent) as a child process with `env`, its progress shown
 * from what it logs: progress bars on a terminal (templates installing, warm pools filling; the
 * ready block with URL and local token), one line per change in plain output, and one JSON document
 * once ready with `--json`. Warnings and errors of its log go to stderr. `signal` (Ctrl-C) stops it;
 * resolves with its exit code.
 */
export async function upCommand(
  o: Output,
  env: Record<string, string | undefined>,
  signal: AbortSignal,
): Promise<number> {
  const tsx = import.meta.resolve('tsx');
  const child: ChildProcess = spawn(process.execPath, ['--import', tsx, ROUTER_MAIN], {
    env: { ...env, LOG_LEVEL: env['LOG_LEVEL'] ?? 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const progress = new UpProgress();
  const renderer = o.json ? jsonRenderer(o) : o.tty ? barsRenderer(o) : plainRenderer(o);
  const apply = (events: UpEvent[]) => {
    for (const e of events) renderer.update(e, progress.state);
  };
  for (const stream of [child.stdout!, child.stderr!])
    createInterface({ input: stream }).on('line', (line) => apply(progress.feed(line)));
  const stop = () => child.kill('SIGINT');
  signal.addEventListener('abort', stop, { once: true });
  const code = await new Promise<number>((resolve) => {
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
    child.once('error', (e) => {
      progress.state.problems.push(`error: ${e.message}`);
      resolve(1);
    });
  });
  signal.removeEventListener('abort', stop);
  apply(progress.end());
  renderer.stop();
  if (!progress.state.ready && o.json)
    printJson(o, { error: { code: 'start_failed', message: lastProblem(progress.state, code) } });
  else if (!progress.state.ready)
    o.err.write(`${paint(o, 'red', 'error start_failed')}: ${lastProblem(progress.state, code)}\n`);
  return code;
}

function lastProblem(s: UpState, code: number): string {
  return `the router exited (code ${code}) before it was ready${s.problems.length ? `: ${s.problems.at(-1)}` : ''}`;
}
