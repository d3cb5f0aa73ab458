import type { Writable } from 'node:stream';
import { styleText } from 'node:util';
import { PreviewError } from '@preview/tiers';

/** Styles the TTY output uses (node:util `styleText` names). */
export type Style = 'bold' | 'dim' | 'red' | 'green' | 'yellow' | 'cyan';

/**
 * Where a command writes and how: `json` prints exactly one JSON document on `out`; otherwise text,
 * with colours only when `tty` (plain text when stdout is not a terminal).
 */
export interface Output {
  out: Writable;
  err: Writable;
  json: boolean;
  tty: boolean;
}

/**
 * `text` in `style` on a terminal; unchanged in plain output. The caller decided (`o.tty`), so
 * node's own check of process.stdout is off.
 */
export function paint(o: Output, style: Style, text: string): string {
  return o.tty ? styleText(style, text, { validateStream: false }) : text;
}

/** Writes `line` and a newline to stdout. */
export function println(o: Output, line = ''): void {
  o.out.write(`${line}\n`);
}

/** Writes the one JSON document of a `--json` run. */
export function printJson(o: Output, doc: unknown): void {
  o.out.write(`${JSON.stringify(doc, null, 2)}\n`);
}

/**
 * Left-aligned columns separated by two spaces (the last column is not padded).
 *
 * @example table([['ID', 'STATE'], ['a1', 'ready']]) // "ID  STATE\na1  ready"
 */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** An error as `{code, message}`: a PreviewError's own code, else `internal`. */
export function errorInfo(e: unknown): { code: string; message: string; status?: number } {
  if (e instanceof PreviewError) {
    const status = (e as { status?: unknown }).status;
    return { code: e.code, message: e.message, ...(typeof status === 'number' ? { status } : {}) };
  }
  return { code: 'internal', message: e instanceof Error ? e.message : String(e) };
}

/**
 * Reports a failed command: `{"error":{code,message}}` on stdout with `--json`, else
 * `error <code>: <message>` on stderr. The caller sets the exit code.
 */
export function printError(o: Output, e: unknown): void {
  const info = errorInfo(e);
  if (o.json) printJson(o, { error: info });
  else o.err.write(`${paint({ ...o, tty: o.tty }, 'red', `error ${info.code}`)}: ${info.message}\n`);
}
