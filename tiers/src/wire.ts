import { z } from 'zod';
import { LIMITS } from './limits.ts';
import { pathProblem, utf8Length } from './paths.ts';

/**
 * Wire schemas shared by the editor, the router, the pool agent and the preview-daemon.
 * Every message is a JSON object with a `type`. Batches carry a sequence number that every ack echoes.
 *
 * @example
 * const batch = FileBatch.parse({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'src/App.tsx', content: '...' }] });
 */

export const ProjectPath = z.string().superRefine((p, ctx) => {
  const problem = pathProblem(p);
  if (problem)
    ctx.addIssue({
      code: 'custom',
      message: problem.message,
      params: { rule: problem.rule },
    });
});

export const Encoding = z.enum(['utf8', 'base64']);

export const PutOp = z.object({
  op: z.literal('put'),
  path: ProjectPath,
  content: z.string(),
  encoding: Encoding.default('utf8'),
});
export const DeleteOp = z.object({ op: z.literal('delete'), path: ProjectPath });
export const RenameOp = z.object({ op: z.literal('rename'), from: ProjectPath, to: ProjectPath });
export const FileOp = z.discriminatedUnion('op', [PutOp, DeleteOp, RenameOp]);
export type FileOp = z.output<typeof FileOp>;
export type PutOp = z.output<typeof PutOp>;

/** Decoded size of a put's content, in bytes. */
export function contentBytes(op: { content: string; encoding?: 'utf8' | 'base64' }): number {
  if (op.encoding === 'base64') {
    const len = op.content.length;
    const pad = op.content.endsWith('==') ? 2 : op.content.endsWith('=') ? 1 : 0;
    return Math.floor((len * 3) / 4) - pad;
  }
  return utf8Length(op.content);
}

export const Seq = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/**
 * Which editor batch a sandbox batch carries: the editor client's id and its own seq. The router's
 * sync hub sets it; a sandbox that already processed that origin answers as it did the first time
 * instead of applying it again (a batch re-sent under a new seq after an owner failover).
 */
export const BatchOrigin = z.object({ client: z.string().min(1).max(128), seq: Seq });
export type BatchOrigin = z.output<typeof BatchOrigin>;

export const FileBatch = z
  .object({
    type: z.literal('batch'),
    seq: Seq,
    ops: z.array(FileOp).min(1).max(LIMITS.batchOps),
    origin: BatchOrigin.optional(),
  })
  .superRefine((b, ctx) => {
    let total = 0;
    b.ops.forEach((op, i) => {
      if (op.op !== 'put') return;
      const n = contentBytes(op);
      total += n;
      if (n > LIMITS.fileBytes)
        ctx.addIssue({
          code: 'custom',
          path: ['ops', i, 'content'],
          message: `file too large: ${n} bytes > ${LIMITS.fileBytes}`,
          params: { rule: 'file_size' },
        });
    });
    if (total > LIMITS.batchBytes)
      ctx.addIssue({
        code: 'custom',
        path: ['ops'],
        message: `batch too large: ${total} bytes > ${LIMITS.batchBytes}`,
        params: { rule: 'batch_size' },
      });
  });
export type FileBatch = z.output<typeof FileBatch>;

export const AckStage = z.enum(['applied', 'persisted']);
/**
 * `duplicate: true`: the batch with this seq was processed before (a replay after a reconnect);
 * nothing was written now. Acks are cumulative per client.
 */
export const Ack = z.object({
  type: z.literal('ack'),
  seq: Seq,
  stage: AckStage,
  duplicate: z.literal(true).optional(),
});
export type Ack = z.output<typeof Ack>;

/** The dev server sent its update for batch `seq`, `ms` after the batch reached the sandbox. */
export const HmrEvent = z.object({
  type: z.literal('hmr'),
  seq: Seq,
  ms: z.number().nonnegative(),
  kind: z.enum(['update', 'full-reload', 'restart']).default('update'),
});
export type HmrEvent = z.output<typeof HmrEvent>;

export const PreviewPhase = z.enum(['installing', 'starting', 'ready', 'error']);
export type PreviewPhase = z.output<typeof PreviewPhase>;

export const StatusEvent = z.object({
  type: z.literal('status'),
  phase: PreviewPhase,
  message: z.string().max(4000).optional(),
  log: z.array(z.string().max(4000)).max(200).optional(),
  at: z.number().optional(),
});
export type StatusEvent = z.output<typeof StatusEvent>;

export const ErrorFrame = z.object({
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
  seq: Seq.optional(),
});
export type ErrorFrame = z.output<typeof ErrorFrame>;

/** First frame from a (re)connecting client: what it has seen acked, so the server can replay the rest. */
export const Hello = z.object({
  type: z.literal('hello'),
  lastAckedSeq: Seq.default(0),
  clientId: z.string().min(1).max(128).optional(),
});
export const Ping = z.object({ type: z.literal('ping'), t: z.number().optional() });
export const Pong = z.object({ type: z.literal('pong'), t: z.number().optional() });

/** Frames the editor (or the router, toward an agent/daemon) sends. */
export const ClientFrame = z.discriminatedUnion('type', [Hello, FileBatch, Ping, Pong]);
export type ClientFrame = z.output<typeof ClientFrame>;

/** Frames flowing back toward the editor. */
export const ServerFrame = z.discriminatedUnion('type', [Ack, HmrEvent, StatusEvent, ErrorFrame, Ping, Pong]);
export type ServerFrame = z.output<typeof ServerFrame>;

/** WebSocket close codes used on sync sockets. */
export const CloseCodes = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  tooBig: 1009,
  /** The consumer fell too far behind; reconnect and replay. */
  slowConsumer: 4008,
  /** Too many batches not yet persisted (the sandbox or the database is behind); reconnect with backoff and replay. */
  overloaded: 4429,
  unauthorized: 4401,
  forbidden: 4403,
  notFound: 4404,
  /** The preview ended. */
  ended: 4410,
} as const;

/**
 * The preview-daemon's port inside a sandbox (container, Fly Machine): one that apps do not commonly
 * take (3000, 3001, 4000, 4200, 5000, 5173, 8000, 8080, 8081, 8888, 19000…), so an app that ignores
 * `PORT` and listens on one of those still gets it.
 */
export const DAEMON_PORT = 17380;

export const TemplateName = z.enum([
  'vite-vanilla',
  'vite-vanilla-ts',
  'vite-react',
  'vite-react-ts',
  'vite-vue',
  'vite-vue-ts',
  'express-pg',
  'next',
  /** Expo (React Native) previewed through its web target: Metro serving react-native-web. */
  'expo',
]);
export type TemplateName = z.output<typeof TemplateName>;

export const WarmCounts = z.record(z.string(), z.number().int().nonnegative());

export const NodeCapacity = z.object({
  slots: z.number().int().nonnegative(),
  used: z.number().int().nonnegative(),
  warm: WarmCounts,
});
export type NodeCapacity = z.output<typeof NodeCapacity>;

/** An agent asks to join: exchanged for a node credential. */
export const NodeRegistration = z.object({
  joinToken: z.string().min(16).max(512),
  name: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[a-zA-Z0-9._-]+$/, 'letters, digits, ".", "_" or "-" only'),
  url: z.url(),
  capacity: NodeCapacity,
  runtime: z.enum(['docker', 'process']),
});
export type NodeRegistration = z.output<typeof NodeRegistration>;

export const NodeRegistered = z.object({
  nodeId: z.uuid(),
  credential: z.string(),
  heartbeatMs: z.number().int().positive(),
  /**
   * Where previews' database traffic goes (the host and port of the `DATABASE_URL`s the router hands
   * out), when the router gives previews a database: the agent forwards to it from the preview
   * network's gateway. Absent: the router has no preview database.
   */
  database: z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }).optional(),
});
export type NodeRegistered = z.output<typeof NodeRegistered>;

export const NodeHeartbeat = z.object({
  capacity: NodeCapacity,
  sessions: z.array(z.string()).max(100_000),
  at: z.number(),
});
export type NodeHeartbeat = z.output<typeof NodeHeartbeat>;

/** The rule a schema issue names (`params.rule` of the path and size refinements), if any. */
export function issueRule(issue: object | undefined): string | undefined {
  const rule = (issue as { params?: { rule?: unknown } } | undefined)?.params?.rule;
  return typeof rule === 'string' ? rule : undefined;
}

const ruleSuffix = (issue: object) => {
  const rule = issueRule(issue);
  return rule ? ` (rule ${rule})` : '';
};

/**
 * The error code for a refused batch, the same over HTTP and the sync socket: `too_large` (rules
 * `file_size`, `batch_size`), `invalid_path` (an issue on a `path`, `from` or `to`), else `fallback`.
 */
export function batchIssueCode(issues: ReadonlyArray<{ path: PropertyKey[] }>, fallback: string): string {
  const first = issues[0];
  const rule = issueRule(first);
  if (rule === 'file_size' || rule === 'batch_size') return 'too_large';
  if (first?.path.some((p) => p === 'path' || p === 'from' || p === 'to')) return 'invalid_path';
  return fallback;
}

/** Parse one JSON text frame with a schema; returns an error frame instead of throwing. */
export function parseFrame<S extends z.ZodType>(
  schema: S,
  text: string,
): { ok: true; value: z.output<S> } | { ok: false; error: ErrorFrame } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return {
      ok: false,
      error: { type: 'error', code: 'malformed_frame', message: 'frame is not valid JSON' },
    };
  }
  const r = schema.safeParse(raw);
  if (r.success) return { ok: true, value: r.data };
  const code = batchIssueCode(r.error.issues, 'invalid_frame');
  const seq = typeof (raw as { seq?: unknown })?.seq === 'number' ? (raw as { seq: number }).seq : undefined;
  return {
    ok: false,
    error: {
      type: 'error',
      code,
      message: r.error.issues
        .slice(0, 5)
        .map((i) => `${i.path.join('.') || '(frame)'}: ${i.message}${ruleSuffix(i)}`)
        .join('; '),
      ...(seq !== undefined && Number.isSafeInteger(seq) && seq >= 0 ? { seq } : {}),
    },
  };
}

/**
 * The `type` of the message the router's injected preview client (router `proxy/activity.ts`)
 * posts to the page that frames the preview when the app throws (an uncaught error or an unhandled
 * rejection): a `RuntimeErrorMessage` (`file` as the browser names the script: a URL on the
 * preview's origin; text cut at 4,000 characters). `@preview/browser-runtime/react`'s
 * `PreviewPanel` shows it in its error overlay. It is posted to any origin: the preview cannot know its editor's, and a page framing it elsewhere holds
 * no access cookie (the cookie is partitioned by the top-level site), so the app does not run there.
 */
export const RUNTIME_ERROR_MESSAGE = 'preview-router:error';

/** What the injected preview client posts with `RUNTIME_ERROR_MESSAGE`. */
export interface RuntimeErrorMessage {
  type: typeof RUNTIME_ERROR_MESSAGE;
  message: string;
  file?: string;
  line?: number;
  column?: number;
  stack?: string;
}
