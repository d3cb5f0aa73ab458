import { Writable } from 'node:stream';

/**
 * A sink for a pino logger under test: `pino({ level: 'info' }, capture.stream)` writes one JSON
 * object per line, and `capture.lines` holds them parsed, in order (fields as logged, `msg` the text).
 */
export function captureLog(): { stream: Writable; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { stream, lines };
}
