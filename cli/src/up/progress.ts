/**
 * What `preview up` shows while the embedded router starts, read from what `npm start` already
 * prints: its pino log lines (JSON, one a line) and the "ready" block (router/src/main.ts).
 */

/** What the router printed once listening: its URL and, in embedded auth, the local access token. */
export interface ReadyInfo {
  url: string;
  /** The local access token (embedded auth only). */
  token?: string;
  /** The local user the token is for. */
  userId?: string;
  /** The editor URL with the token in its fragment. */
  editorUrl?: string;
}

/** One template's dependency install (host-process runtime). */
export type InstallState = 'pending' | 'installing' | 'installed' | 'failed';

/** Everything `preview up` knows about the start so far. */
export interface UpState {
  /** Steps seen, in order (`embedded Postgres`, `migrations`, `daemon bundle`, `router`, `agent`). */
  steps: string[];
  /** The embedded agent's runtime once registered: `docker` or `process`. */
  runtime?: string;
  templates: Record<string, InstallState>;
  /** Ready warm sandboxes and the target per template (WARM_POOL). */
  warm: Record<string, { ready: number; target: number }>;
  ready?: ReadyInfo;
  /** Warnings and errors of the log, as `level: message` lines. */
  problems: string[];
}

/** What one line changed, for the renderer. */
export type UpEvent =
  | { kind: 'step'; step: string }
  | { kind: 'templates' }
  | { kind: 'warm' }
  | { kind: 'ready'; ready: ReadyInfo }
  | { kind: 'problem'; line: string }
  | { kind: 'log'; line: string };

const WARN = 40;

/** Ready warm sandboxes and targets summed over the templates. */
export function warmTotals(s: UpState): { ready: number; target: number } {
  let ready = 0;
  let target = 0;
  for (const w of Object.values(s.warm)) {
    ready += Math.min(w.ready, w.target);
    target += w.target;
  }
  return { ready, target };
}

/** Templates whose install finished (installed or failed), and how many there are. */
export function templateTotals(s: UpState): { done: number; total: number; current?: string } {
  const entries = Object.entries(s.templates);
  const done = entries.filter(([, v]) => v === 'installed' || v === 'failed').length;
  const current = entries.find(([, v]) => v === 'installing')?.[0];
  return { done, total: entries.length, ...(current ? { current } : {}) };
}

/**
 * Whether the start has settled: the router is ready, every template install finished and every
 * warm pool reached its target (or a warning said a sandbox failed to start).
 */
export function settled(s: UpState): boolean {
  if (!s.ready) return false;
  const t = templateTotals(s);
  if (t.done < t.total) return false;
  const w = warmTotals(s);
  return w.ready >= w.target || s.problems.some((p) => p.includes('warm sandbox failed to start'));
}

/**
 * Reads the router's output line by line into an {@link UpState}: `feed` returns what the line
 * changed (nothing for lines of no interest). The "ready" block is recognised by its text
 * (`Preview router ready at`, `local access token (user ...)`, `editor: ...#token=`).
 */
export class UpProgress {
  readonly state: UpState = { steps: [], templates: {}, warm: {}, problems: [] };
  #awaitingToken = false;
  #pendingReady: ReadyInfo | undefined;

  /** One line of the router's stdout or stderr. */
  feed(line: string): UpEvent[] {
    const text = line.trim();
    if (!text) return this.#flushReady();
    if (text.startsWith('{')) {
      try {
        return this.#log(JSON.parse(text) as Record<string, unknown>);
      } catch {
        // Not a log record: handled as text below.
      }
    }
    return this.#text(text);
  }

  /** The end of the output: a "ready" block still being read is complete. */
  end(): UpEvent[] {
    return this.#flushReady();
  }

  #text(text: string): UpEvent[] {
    const ready = /^Preview router ready at (\S+)/.exec(text);
    if (ready) {
      this.#pendingReady = { url: ready[1]! };
      return [];
    }
    if (!this.#pendingReady) return [{ kind: 'log', line: text }];
    const user = /^local access token \(user ([^)]+)\):/.exec(text);
    if (user) {
      this.#pendingReady.userId = user[1]!;
      this.#awaitingToken = true;
      return [];
    }
    if (this.#awaitingToken) {
      this.#pendingReady.token = text;
      this.#awaitingToken = false;
      return [];
    }
    const editor = /^(?:demo )?editor: (\S+)/.exec(text);
    if (editor) {
      this.#pendingReady.editorUrl = editor[1]!;
      return this.#flushReady();
    }
    return [];
  }

  #flushReady(): UpEvent[] {
    const ready = this.#pendingReady;
    if (!ready) return [];
    this.#pendingReady = undefined;
    this.state.ready = ready;
    return [{ kind: 'ready', ready }];
  }

  #step(step: string): UpEvent[] {
    this.state.steps.push(step);
    return [{ kind: 'step', step }];
  }

  #log(r: Record<string, unknown>): UpEvent[] {
    const msg = typeof r['msg'] === 'string' ? r['msg'] : '';
    const level = typeof r['level'] === 'number' ? r['level'] : 30;
    const template = typeof r['template'] === 'string' ? r['template'] : undefined;
    const out: UpEvent[] = [];
    if (msg === 'DATABASE_URL unset: starting embedded Postgres')
      out.push(...this.#step('embedded Postgres'));
    else if (msg === 'migrations') out.push(...this.#step('migrations'));
    else if (msg === 'building the preview-daemon bundle') out.push(...this.#step('daemon bundle'));
    else if (msg === 'router listening') out.push(...this.#step('router'));
    else if (msg === 'embedded pool agent registered') {
      this.state.runtime = typeof r['runtime'] === 'string' ? r['runtime'] : undefined;
      const targets = (r['warmTargets'] ?? {}) as Record<string, number>;
      for (const [t, n] of Object.entries(targets))
        if (n > 0) this.state.warm[t] = { ready: this.state.warm[t]?.ready ?? 0, target: n };
      out.push(...this.#step('agent'), { kind: 'warm' });
    } else if (Array.isArray(r['templates']) && msg.startsWith("installing the templates' dependencies")) {
      for (const t of r['templates'] as string[]) this.state.templates[t] ??= 'pending';
      out.push({ kind: 'templates' });
    } else if (template && msg.startsWith(`template ${template}: `) && level < WARN) {
      this.state.templates[template] = msg.endsWith('installing dependencies (npm ci)')
        ? 'installing'
        : 'installed';
      out.push({ kind: 'templates' });
    } else if (template && msg === 'warm sandbox ready') {
      const w = this.state.warm[template] ?? { ready: 0, target: 0 };
      this.state.warm[template] = w;
      w.ready = typeof r['ready'] === 'number' ? r['ready'] : w.ready + 1;
      out.push({ kind: 'warm' });
    }
    if (level >= WARN) {
      if (template && template in this.state.templates && msg.startsWith(`template ${template}:`)) {
        this.state.templates[template] = 'failed';
        out.push({ kind: 'templates' });
      }
      const err = (r['err'] as { message?: unknown } | undefined)?.message;
      const line = `${level >= 50 ? 'error' : 'warn'}: ${msg}${typeof err === 'string' ? ` (${err})` : ''}`;
      this.state.problems.push(line);
      out.push({ kind: 'problem', line });
    }
    return out;
  }
}
