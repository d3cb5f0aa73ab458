import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { text as readStream } from 'node:stream/consumers';
import { signUserJwt } from '@preview/router/auth/jwt';
import { ConfigError } from '@preview/tiers';
import { chunks, RouterClient, type StreamEvent } from '../api-client.ts';
import { type Output, paint, printJson, println, table } from '../output.ts';

/** Flags and environment that locate the router API. */
export interface ApiTarget {
  /** `--url`, else PREVIEW_URL, else `http://127.0.0.1:8787` (`npm start`'s default address). */
  url?: string;
  /** `--token`, else PREVIEW_TOKEN: the local access token `npm start` prints, a JWT or an API key. */
  token?: string;
}

/** The router `npm start` listens on by default (router config HOST and PORT). */
export const DEFAULT_ROUTER_URL = 'http://127.0.0.1:8787';

/** The hosts a local token is signed for: an embedded router on this machine. */
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The local access token of an embedded router (`preview up` / `npm start`) on this machine: a
 * one-hour user token signed with the secrets it keeps in `<DATA_DIR>/local-secrets.json` (DATA_DIR
 * as the router reads it, default `.data`), or `undefined` when that file is not there.
 */
export async function localToken(env: Record<string, string | undefined>): Promise<string | undefined> {
  const file = resolve(env['DATA_DIR'] || '.data', 'local-secrets.json');
  let secrets: { jwtSecret?: unknown; localUserId?: unknown };
  try {
    secrets = JSON.parse(await readFile(file, 'utf8')) as typeof secrets;
  } catch {
    return undefined;
  }
  if (typeof secrets.jwtSecret !== 'string' || typeof secrets.localUserId !== 'string') return undefined;
  return signUserJwt({ secret: secrets.jwtSecret, userId: secrets.localUserId, ttlSeconds: 3600 });
}

/**
 * A client for the flags, falling back to PREVIEW_URL / PREVIEW_TOKEN in `env`; with neither token
 * and a router on this machine, the local access token of the embedded router ({@link localToken}).
 *
 * @throws ConfigError (`invalid_config`) when no token is found, or the URL is not an http(s) URL.
 */
export async function clientFor(
  flags: ApiTarget,
  env: Record<string, string | undefined>,
): Promise<RouterClient> {
  const url = flags.url ?? env['PREVIEW_URL'] ?? DEFAULT_ROUTER_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('invalid_config', `--url / PREVIEW_URL: "${url}" is not a URL (rule url)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new ConfigError('invalid_config', `--url / PREVIEW_URL: "${url}" is not http(s) (rule http_url)`);
  const token =
    flags.token ??
    env['PREVIEW_TOKEN'] ??
    (LOOPBACK.has(parsed.hostname) ? await localToken(env) : undefined);
  if (!token)
    throw new ConfigError(
      'invalid_config',
      '--token / PREVIEW_TOKEN: required (rule required); `preview up` prints a local access token',
    );
  return new RouterClient({ url, token });
}

/** `preview ls`: the caller's previews, newest first; ended ones too with `all`. */
export async function listCommand(
  client: RouterClient,
  o: Output,
  flags: { all?: boolean },
): Promise<number> {
  const previews = await client.list({ all: flags.all === true });
  if (o.json) {
    printJson(o, { previews });
    return 0;
  }
  if (!previews.length) {
    println(o, flags.all ? 'no previews' : 'no live previews (--all shows ended ones)');
    return 0;
  }
  const rows = previews.map((p) => [
    p.id,
    p.state,
    p.tier ?? '-',
    p.template,
    p.createdAt,
    p.previewUrl ?? '-',
  ]);
  const [head, ...body] = table([['ID', 'STATE', 'TIER', 'TEMPLATE', 'CREATED', 'URL'], ...rows]).split('\n');
  println(o, paint(o, 'bold', head!));
  for (const line of body) println(o, line);
  return 0;
}

/** One event as a text line: `state ready (docker)`, `status starting: message`, or the log lines. */
export function formatEvent(e: StreamEvent): string[] {
  const d = e.data;
  if (e.event === 'log' && Array.isArray(d['lines'])) return (d['lines'] as unknown[]).map(String);
  if (e.event === 'state') {
    const tier = typeof d['tier'] === 'string' ? ` (${d['tier']})` : '';
    const error = typeof d['error'] === 'string' && d['error'] ? `: ${d['error']}` : '';
    return [`[state] ${String(d['state'])}${tier}${error}`];
  }
  if (e.event === 'status') {
    const message = typeof d['message'] === 'string' ? `: ${d['message']}` : '';
    return [`[status] ${String(d['phase'])}${message}`];
  }
  return [`[${e.event}] ${JSON.stringify(d)}`];
}

/**
 * `preview logs <id>`: the preview's state and recent status and log events; with `follow`, then
 * the live ones until the preview ends or `signal` aborts (Ctrl-C). `--json` prints one document
 * `{id, events}` when the stream ends.
 */
export async function logsCommand(
  client: RouterClient,
  o: Output,
  id: string,
  flags: { follow?: boolean; signal?: AbortSignal },
): Promise<number> {
  const events: StreamEvent[] = [];
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  flags.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const e of client.events(id, { follow: flags.follow === true, signal: stop.signal })) {
      if (o.json) events.push(e);
      else
        for (const line of formatEvent(e))
          println(o, e.event === 'log' ? line : paint(o, e.event === 'state' ? 'cyan' : 'dim', line));
      if (e.event === 'state' && e.data['state'] === 'ended') break;
    }
  } finally {
    flags.signal?.removeEventListener('abort', onAbort);
  }
  if (o.json) printJson(o, { id, events });
  return 0;
}

/** `preview rm <id>`: stops and removes the preview (repeat-safe). */
export async function removeCommand(client: RouterClient, o: Output, id: string): Promise<number> {
  await client.remove(id);
  if (o.json) printJson(o, { id, removed: true });
  else println(o, `removed ${id}`);
  return 0;
}

/**
 * `preview export <id>`: the preview's database as SQL on stdout (`> dump.sql`); with `--json`,
 * one document `{id, sql}`.
 */
export async function exportCommand(client: RouterClient, o: Output, id: string): Promise<number> {
  const body = await client.exportDatabase(id);
  if (o.json) {
    printJson(o, { id, sql: await new Response(body).text() });
    return 0;
  }
  for await (const chunk of chunks(body))
    if (!o.out.write(chunk)) await new Promise((r) => o.out.once('drain', () => r(undefined)));
  return 0;
}

/** Flags of `preview deploy-db`. */
export interface DeployFlags {
  /** The target database (`postgres://…`); else DEPLOY_DATABASE_URL. */
  target?: string;
  /** Target schema. @default 'public' (the router's default) */
  schema?: string;
  replace?: boolean;
  dropPreviewSchema?: boolean;
}

/**
 * `preview deploy-db <projectId> --target URL`: copies the project's database with its rows into the
 * target (one transaction, counts and sequences checked by the router) and prints what it did.
 * @throws ConfigError (`invalid_config`) when neither `--target` nor DEPLOY_DATABASE_URL is given
 */
export async function deployCommand(
  client: RouterClient,
  o: Output,
  projectId: string,
  flags: DeployFlags,
  env: Record<string, string | undefined>,
): Promise<number> {
  const databaseUrl = flags.target ?? env['DEPLOY_DATABASE_URL'];
  if (!databaseUrl)
    throw new ConfigError('invalid_config', '--target / DEPLOY_DATABASE_URL: required (rule required)');
  const report = await client.deployDatabase(projectId, {
    databaseUrl,
    ...(flags.schema ? { schema: flags.schema } : {}),
    ...(flags.replace ? { replace: true } : {}),
    ...(flags.dropPreviewSchema ? { dropPreviewSchema: true } : {}),
  });
  if (o.json) {
    printJson(o, { projectId, ...report });
    return 0;
  }
  const tables = (report['tables'] as Array<{ name: string; rows: number }> | undefined) ?? [];
  const sequences = (report['sequences'] as Array<{ name: string; value: string | null }> | undefined) ?? [];
  println(o, `deployed ${projectId} into schema ${String(report['schema'])} in ${String(report['ms'])} ms`);
  if (tables.length)
    for (const line of table([['TABLE', 'ROWS'], ...tables.map((t) => [t.name, String(t.rows)])]).split('\n'))
      println(o, line);
  for (const s of sequences) println(o, `sequence ${s.name} = ${s.value ?? '-'}`);
  const replaced = (report['replaced'] as string[] | undefined) ?? [];
  if (replaced.length) println(o, `replaced: ${replaced.join(', ')}`);
  if (report['previewSchemaDropped']) println(o, 'the preview schema was dropped');
  return 0;
}

/**
 * `preview seed <projectId> [--file seed.sql]`: runs the SQL (the file, else stdin) in the project's
 * database as its preview role, in one transaction.
 */
export async function seedCommand(
  client: RouterClient,
  o: Output,
  projectId: string,
  flags: { file?: string; script?: boolean; stdin: NodeJS.ReadableStream },
): Promise<number> {
  if (flags.script && flags.file)
    throw new ConfigError('invalid_config', '--script and --file: give one (rule one_source)');
  const sql = flags.script
    ? undefined
    : flags.file
      ? await readFile(flags.file, 'utf8')
      : await readStream(flags.stdin);
  const result = await client.seedDatabase(projectId, sql);
  if (o.json) printJson(o, { projectId, ...result });
  else {
    println(o, `seeded ${projectId} from ${String(result['source'] ?? 'sql')} in ${String(result['ms'])} ms`);
    if (typeof result['output'] === 'string' && result['output']) println(o, result['output'].trimEnd());
  }
  return 0;
}
