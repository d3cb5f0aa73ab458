/** Structured JSON-lines logger (the daemon is bundled small; no pino). */
export interface Logger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

export function jsonLogger(write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const at = (level: string) => (fields: object, msg: string) =>
    write(`${JSON.stringify({ level, time: Date.now(), msg, ...fields })}\n`);
  return { info: at('info'), warn: at('warn'), error: at('error') };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

const MAX_LINE = 4000;

/** The last lines a dev server or installer printed, for status reports. */
export class LogRing {
  private lines: string[] = [];
  constructor(private readonly max = 200) {}

  /**
   * Adds output, split into lines. Anything else than a string (Vite's logger is handed the Error a
   * watcher callback threw) is logged as its stack or its string form, never thrown on.
   */
  push(text: unknown): void {
    const s =
      typeof text === 'string' ? text : text instanceof Error ? (text.stack ?? text.message) : String(text);
    for (const raw of s.split('\n')) {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
      const line = raw.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '').trimEnd();
      if (!line) continue;
      this.lines.push(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line);
    }
    if (this.lines.length > this.max) this.lines = this.lines.slice(-this.max);
  }

  tail(n = 50): string[] {
    return this.lines.slice(-n);
  }

  /**
   * What a status report quotes of an app that stopped: its last `n` lines, unless they end in a
   * stack trace, whose frames would push the error itself out (Node prints the message, then ten
   * `    at` frames, then its version). Then: the lines before the trace's first frame (the error and
   * the source line it points at, at most {@link ERROR_HEAD_LINES}), the first {@link TRACE_FRAMES}
   * frames, how many more there were, and whatever followed the trace.
   */
  lastLines(n = 5): string[] {
    const lines = this.lines;
    let last = lines.length - 1;
    while (last >= 0 && !STACK_FRAME.test(lines[last]!)) last--;
    // No trace, or one that ended long before the last lines.
    if (last < 0 || lines.length - 1 - last >= n) return this.tail(n);
    let first = last;
    while (first > 0 && STACK_FRAME.test(lines[first - 1]!)) first--;
    let head = first;
    while (head > 0 && first - head < ERROR_HEAD_LINES && !STACK_FRAME.test(lines[head - 1]!)) head--;
    const frames = last - first + 1;
    return [
      ...lines.slice(head, first + Math.min(frames, TRACE_FRAMES)),
      ...(frames > TRACE_FRAMES ? [`    … ${frames - TRACE_FRAMES} more frames`] : []),
      ...lines.slice(last + 1),
    ];
  }
}

/** A line of a V8 stack trace. */
const STACK_FRAME = /^\s+at /;
/** Lines kept before a stack trace's first frame: Node's source excerpt, caret, error and hint. */
const ERROR_HEAD_LINES = 6;
/** Frames of a stack trace kept in a status report. */
const TRACE_FRAMES = 3;
