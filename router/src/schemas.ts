import { z } from '@hono/zod-openapi';
import { isTargetDatabaseUrl, MAX_DATABASE_URL_LENGTH } from '@preview/db-isolation';
import { contentBytes, Encoding, LIMITS, pathProblem, TemplateName } from '@preview/tiers';

/** Request and response bodies of the API (zod, published as OpenAPI). */

export const FileContent = z.union([
  z.string(),
  z.object({ content: z.string(), encoding: Encoding.default('utf8') }),
]);

export const ProjectFilesBody = z
  .record(z.string(), FileContent)
  .superRefine((files, ctx) => {
    const entries = Object.entries(files);
    if (entries.length > LIMITS.projectFiles)
      ctx.addIssue({
        code: 'custom',
        message: `at most ${LIMITS.projectFiles} files (rule project_files)`,
        params: { rule: 'project_files' },
      });
    let total = 0;
    for (const [path, f] of entries) {
      const problem = pathProblem(path);
      if (problem)
        ctx.addIssue({
          code: 'custom',
          path: [path],
          message: `${problem.message} (rule ${problem.rule})`,
          params: { rule: problem.rule },
        });
      const n = typeof f === 'string' ? contentBytes({ content: f }) : contentBytes(f);
      total += n;
      if (n > LIMITS.fileBytes)
        ctx.addIssue({
          code: 'custom',
          path: [path],
          message: `file too large: ${n} bytes (rule file_size)`,
          params: { rule: 'file_size' },
        });
    }
    if (total > LIMITS.projectBytes)
      ctx.addIssue({
        code: 'custom',
        message: `project too large: ${total} bytes (rule project_size)`,
        params: { rule: 'project_size' },
      });
  })
  .openapi({ description: 'Project files: path → utf8 text, or {content, encoding: "base64"}' });

/**
 * A project id: the editor's app id, 1–128 characters of letters, digits, `.`, `_` and `-`, starting
 * with a letter or digit (safe in URLs, logs and SQL text; the same rule is a CHECK on
 * `preview_projects.project_id`).
 */
export const PROJECT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** {@link PROJECT_ID_PATTERN} as a zod string; a bad one names rule `project_id`. */
export const ProjectId = z
  .string()
  .superRefine((s, ctx) => {
    if (!PROJECT_ID_PATTERN.test(s))
      ctx.addIssue({
        code: 'custom',
        message:
          "must be 1-128 characters of letters, digits, '.', '_' and '-', starting with a letter or digit",
        params: { rule: 'project_id' },
      });
  })
  .openapi({ description: 'The editor’s app id', example: 'app_3f9c2b' });

export const CreatePreviewBody = z
  .object({
    files: ProjectFilesBody.openapi({
      description:
        'Project files. With a `projectId` whose previews ended, the project’s stored files (the last persisted files of its previous preview) are used instead; these seed a new project',
    }),
    projectId: ProjectId.optional().openapi({
      description:
        'The editor’s app id: one live preview per (user, project). Creating again returns the live one (200; a suspended one is woken); after it ended, a new one starts from the project’s stored files and keeps the project’s database',
    }),
    template: TemplateName.optional().openapi({ description: 'Override the detected template' }),
    client: z
      .object({ webcontainer: z.boolean().default(false), bundler: z.boolean().default(false) })
      .strict()
      .default({ webcontainer: false, bundler: false })
      .openapi({ description: 'What the editor’s browser can run' }),
    serverOnly: z.boolean().optional().openapi({ description: 'Skip the browser tier' }),
  })
  .strict()
  .openapi('CreatePreview');

export const PreviewId = z.uuid();
export const ProjectIdParams = z.object({
  projectId: ProjectId.openapi({ param: { name: 'projectId', in: 'path' } }),
});
export const IdParams = z.object({ id: PreviewId.openapi({ param: { name: 'id', in: 'path' } }) });

export const Reason = z.object({
  tier: z.enum(['browser', 'docker', 'fly']),
  outcome: z.enum(['chosen', 'skipped', 'failed']),
  reason: z.string(),
});

export const PreviewView = z
  .object({
    id: z.uuid(),
    state: z.string(),
    template: TemplateName,
    tier: z.enum(['browser', 'docker', 'fly']).nullable(),
    placement: z.record(z.string(), z.unknown()).nullable(),
    classification: z.record(z.string(), z.unknown()),
    reasons: z.array(Reason),
    previewUrl: z
      .string()
      .nullable()
      .openapi({ description: 'Server tiers: URL with a short-lived access token' }),
    error: z.string().nullable(),
    lastSeq: z.number(),
    projectId: z.string().nullable().openapi({ description: 'The editor’s app id, or null' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Preview');

export const PreviewList = z
  .object({ previews: z.array(PreviewView), nextCursor: z.string().nullable() })
  .openapi('PreviewList');

export const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
  all: z.enum(['true', 'false']).optional().openapi({ description: 'Include ended and failed previews' }),
});

/** Query of `GET /v1/previews/{id}/events`. */
export const EventsQuery = z.object({
  follow: z
    .enum(['true', 'false'], { error: 'must be true or false (rule enum)' })
    .optional()
    .openapi({ description: '`false`: end after the current state and the recent events (default `true`)' }),
});

/**
 * Headers of `GET /v1/previews/{id}/events`: `Last-Event-ID`, the id of the last event a client got
 * (what EventSource sends when it reconnects); the stream then resumes after it.
 */
export const EventsHeaders = z.object({
  'last-event-id': z
    .string()
    .regex(/^\d{1,15}$/, 'must be a non-negative integer, an event id this stream sent (rule integer)')
    .optional()
    .openapi({ description: 'Resume after this event id (`id:` of an earlier event)' }),
});

export const RealtimeSession = z
  .object({
    topic: z.string().openapi({ example: 'preview:0b7c9a52-4f0e-4d7e-9d8e-6f1f1c2b3a4d' }),
    editorToken: z
      .string()
      .optional()
      .openapi({
        description:
          'With `editorId`: a short-lived token (REALTIME_EDITOR_TOKEN_TTL_MS) bound to the preview, ' +
          'its owner and the editor id; the editor sends it in its hello and the bridge admits it only then',
      }),
    expiresAt: z.iso.datetime().optional(),
  })
  .openapi('RealtimeSession');

/** Body of `POST /v1/nodes/previews/:id/failed`: why the sandbox stopped (the agent's exit reason). */
export const NodeFailedReport = z
  .object({
    reason: z.string().min(1).max(2000, 'at most 2000 characters (rule max_length)'),
    oomKilled: z.boolean().optional(),
  })
  .openapi('NodeFailedReport');

/** Body of `POST /v1/previews/:id/realtime`. */
export const RealtimeRequest = z
  .object({
    /** The editor's id on the channel (the envelopes' `from`), to bind an editor token to. */
    editorId: z
      .string()
      .regex(/^[\x21-\x7e]{1,128}$/, '1-128 visible ASCII characters (rule editor_id)')
      .optional(),
  })
  .openapi('RealtimeRequest');

export const ErrorBody = z
  .object({ error: z.object({ code: z.string(), message: z.string() }) })
  .openapi('Error');

export const AckBody = z.object({
  type: z.literal('ack'),
  seq: z.number(),
  stage: z.enum(['applied', 'persisted']),
});
export const FilesResult = z.object({ applied: AckBody, persisted: AckBody }).openapi('FilesResult');

/** Largest `sql` of a seed, in UTF-8 bytes (512 KiB; larger data belongs in a deploy or a migration). */
export const SEED_MAX_BYTES = 512 * 1024;

export const DeployDatabaseBody = z
  .object({
    databaseUrl: z
      .string()
      .refine(isTargetDatabaseUrl, {
        message: `must be a postgres:// or postgresql:// URL with a host and a database name, at most ${MAX_DATABASE_URL_LENGTH} characters`,
        params: { rule: 'database_url' },
      })
      .openapi({
        description:
          'The target database: `postgres://user:password@host:port/database` (the user needs CREATE there)',
        example: 'postgres://app:secret@db.example.com:5432/app',
      }),
    schema: z
      .string()
      .superRefine((s, ctx) => {
        if (!/^[a-z_][a-z0-9_]{0,62}$/.test(s) || s.startsWith('pg_'))
          ctx.addIssue({
            code: 'custom',
            message: 'must be a lowercase SQL identifier [a-z_][a-z0-9_]{0,62}, not starting with pg_',
            params: { rule: 'identifier' },
          });
      })
      .default('public')
      .openapi({ description: 'The target schema (created when missing)', example: 'public' }),
    replace: z
      .boolean()
      .default(false)
      .openapi({ description: 'Drop target tables, views, sequences and types of the same names first' }),
    dropPreviewSchema: z.boolean().default(false).openapi({
      description: 'Drop the project’s preview schema after a successful deploy (no live preview allowed)',
    }),
  })
  .strict()
  .openapi('DeployDatabase');

export const DeployReportBody = z
  .object({
    schema: z.string(),
    tables: z.array(z.object({ name: z.string(), rows: z.number().int() })),
    sequences: z.array(z.object({ name: z.string(), value: z.string().nullable() })),
    replaced: z.array(z.string()).openapi({ description: 'Target objects dropped first (`replace`)' }),
    previewSchemaDropped: z.boolean(),
    ms: z.number().int(),
  })
  .openapi('DeployReport');

export const SeedDatabaseBody = z
  .object({
    sql: z
      .string()
      .min(1, 'must not be empty')
      .refine((s) => Buffer.byteLength(s) <= SEED_MAX_BYTES, {
        message: `must be at most ${SEED_MAX_BYTES} bytes`,
        params: { rule: 'seed_size' },
      })
      .optional()
      .openapi({ description: 'SQL statements, run in one transaction in the preview’s schema as its role' }),
    script: z.boolean().optional().openapi({
      description:
        'Run the project’s own seed (the same as sending no `sql`): its `supabase/seed.sql` or `seed.sql`, else package.json `scripts.seed` in its running preview',
    }),
  })
  .strict()
  .refine((b) => !(b.sql !== undefined && b.script === true), {
    message: 'send either sql or script: true, not both',
    path: ['script'],
    params: { rule: 'sql_or_script' },
  })
  .openapi('SeedDatabase');

export const SeedResultBody = z
  .object({
    ms: z.number().int(),
    source: z.string().openapi({
      description:
        '`sql`, the seed file that ran (`supabase/seed.sql`, `seed.sql`) or `package.json scripts.seed`',
    }),
    output: z.string().optional().openapi({ description: 'The seed script’s output (its last 16 KiB)' }),
  })
  .openapi('SeedResult');
