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
}
