import { performance } from 'node:perf_hooks';
import { ClientFrame, contentBytes, type ErrorFrame, LIMITS, parseFrame, pathProblem } from '@preview/tiers';
import type { WebSocket } from 'ws';
import { ackText, type BatchApplier, errorText, violationText } from './batches.ts';
import type { DaemonStatus } from './status.ts';
import type { PathViolation } from './validate.ts';

/**
 * Serves one sync socket (PROTOCOL.md): sends the status at once and on every change, answers
 * `ping` with `pong` and `hello` with the last applied seq and the status, hands batches to the
 * applier, and refuses binary and malformed frames with an `error` frame that names what is wrong.
 *
 * @example
 * wss.handleUpgrade(req, socket, head, (ws) => serveSyncSocket(ws, status, batches));
 */
export function serveSyncSocket(ws: WebSocket, status: DaemonStatus<WebSocket>, batches: BatchApplier): void {
  status.clients.add(ws);
  ws.on('close', () => status.clients.delete(ws));
  ws.on('error', () => {});
  ws.send(status.frame());
  ws.on('message', (data, isBinary) => {
    const t0 = performance.now();
    if (isBinary) return ws.send(errorText({ code: 'malformed_frame', message: 'frames are JSON text' }));
    const text = String(data);
    const parsed = parseFrame(ClientFrame, text);
    if (!parsed.ok) return ws.send(JSON.stringify(describeBadFrame(text, parsed.error)));
    const frame = parsed.value;
    if (frame.type === 'batch') return batches.enqueue(ws, frame, t0);
    if (frame.type === 'ping')
      return ws.send(JSON.stringify({ type: 'pong', ...(frame.t ? { t: frame.t } : {}) }));
    if (frame.type === 'hello') {
      // Tell a reconnecting client where this daemon is, so it can replay what is missing.
      if (batches.lastSeq > 0) ws.send(ackText(batches.lastSeq));
      ws.send(status.frame());
    }
  });
}

/**
 * A frame the schema refused. For batches, name the offending path and rule (the schema's own
 * message names only the field), so the editor can show which file was refused and why.
 */
export function describeBadFrame(text: string, fallback: ErrorFrame): ErrorFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fallback;
  }
  const b = raw as { type?: unknown; ops?: unknown };
  if (b?.type !== 'batch' || !Array.isArray(b.ops)) return fallback;
  const seq = fallback.seq;
  const withSeq = (code: string, v: PathViolation): ErrorFrame => ({
    type: 'error',
    code,
    message: violationText(v),
    ...(seq !== undefined ? { seq } : {}),
  });
  if (b.ops.length > LIMITS.batchOps)
    return withSeq('too_many_files', {
      path: '(batch)',
      rule: 'batch_ops',
      message: `a batch holds at most ${LIMITS.batchOps} operations, got ${b.ops.length}`,
    });
  let total = 0;
  for (const op of b.ops as Array<Record<string, unknown>>) {
    for (const key of ['path', 'from', 'to']) {
      const p = op?.[key];
      if (typeof p !== 'string') continue;
      const problem = pathProblem(p);
      if (problem) return withSeq('invalid_path', { path: p, ...problem });
    }
    if (op?.op === 'put' && typeof op.content === 'string') {
      const n = contentBytes({ content: op.content, encoding: op.encoding === 'base64' ? 'base64' : 'utf8' });
      total += n;
      if (n > LIMITS.fileBytes)
        return withSeq('too_large', {
          path: String(op.path),
          rule: 'file_size',
          message: `file too large: ${n} bytes > ${LIMITS.fileBytes}`,
        });
    }
  }
  if (total > LIMITS.batchBytes)
    return withSeq('too_large', {
      path: '(batch)',
      rule: 'batch_size',
      message: `batch too large: ${total} bytes > ${LIMITS.batchBytes}`,
    });
  return fallback;
}
