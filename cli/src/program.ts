import { Readable } from 'node:stream';
import { Command, CommanderError, Option } from 'commander';
import { agentCommand } from './commands/agent.ts';
import {
  type ApiTarget,
  clientFor,
  DEFAULT_ROUTER_URL,
  type DeployFlags,
  deployCommand,
  exportCommand,
  listCommand,
  logsCommand,
  removeCommand,
  seedCommand,
} from './commands/previews.ts';
import { upCommand } from './commands/up.ts';
import { doctorCommand } from './doctor/run.ts';
import { type Output, printError } from './output.ts';

/** What the CLI runs with; `main.ts` passes the process's own. */
export interface CliContext {
  /** The environment (the only place the CLI reads it is `main.ts`). */
  env: Record<string, string | undefined>;
  out: NodeJS.WritableStream & import('node:stream').Writable;
  err: NodeJS.WritableStream & import('node:stream').Writable;
  /** Whether stdout is a terminal (colours, progress bars); else plain text. */
  tty: boolean;
  /** Aborted on SIGINT / SIGTERM: long-running commands stop cleanly. */
  signal: AbortSignal;
  /** Standard input (`preview seed` without `--file`). @default an empty stream */
  in?: NodeJS.ReadableStream;
}

interface JsonFlag {
  json?: boolean;
}

const jsonOption = () => new Option('--json', 'print one JSON document instead of text');

function apiCommand(program: Command, name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .addOption(jsonOption())
    .option('--url <url>', `router URL (env PREVIEW_URL; default ${DEFAULT_ROUTER_URL})`)
    .option(
      '--token <token>',
      'access token: the local one `preview up` prints, a JWT or an API key (env PREVIEW_TOKEN)',
    );
}

/**
 * The `preview` command line: `up`, `agent`, `doctor`, `ls`, `logs`, `rm`, `export`, `deploy-db`, `seed`. Every command
 * takes `--json`. Resolves with the exit code: 0, 1 when the command failed (its error printed with
 * its code and message), 2 for a usage error.
 */
export async function runCli(argv: string[], ctx: CliContext): Promise<number> {
  let exitCode = 0;
  const output = (flags: JsonFlag): Output => ({
    out: ctx.out,
    err: ctx.err,
    json: flags.json === true,
    tty: ctx.tty,
  });
  const guard =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>, flagsOf: (...args: A) => JsonFlag) =>
    async (...args: A) => {
      try {
        exitCode = await fn(...args);
      } catch (e) {
        printError(output(flagsOf(...args)), e);
        exitCode = 1;
      }
    };

  const program = new Command('preview')
    .description('Live previews: run the router (embedded mode) or a node, check a machine, manage previews.')
    .configureOutput({ writeOut: (s) => ctx.out.write(s), writeErr: (s) => ctx.err.write(s) })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('up')
    .description('run the router in embedded mode (what `npm start` runs), with progress while it starts')
    .addOption(jsonOption())
    .action(
      guard(
        async (flags: JsonFlag) => upCommand(output(flags), ctx.env, ctx.signal),
        (f) => f,
      ),
    );

  program
    .command('agent')
    .description('run a pool agent (a node) registered with a router')
    .requiredOption('--router <url>', 'the router to register with (ROUTER_URL)')
    .requiredOption('--join-token <token>', "the router's join token (ROUTER_JOIN_TOKEN)")
    .option('--name <name>', 'node name (NODE_NAME)')
    .option('--port <port>', 'agent API port, 0 for any (AGENT_PORT)')
    .option('--host <host>', 'agent API address (AGENT_HOST)')
    .addOption(new Option('--runtime <runtime>', 'AGENT_RUNTIME').choices(['docker', 'process', 'auto']))
    .addOption(jsonOption())
    .action(
      guard(
        async (flags: JsonFlag & Parameters<typeof agentCommand>[1]) =>
          agentCommand(output(flags), flags, ctx.env, ctx.signal),
        (f) => f,
      ),
    );

  program
    .command('doctor')
    .description('check Docker, the preview image, bubblewrap, Postgres, Redis, the port and the clock')
    .addOption(jsonOption())
    .action(
      guard(
        async (flags: JsonFlag) => doctorCommand(output(flags), ctx.env),
        (f) => f,
      ),
    );

  apiCommand(program, 'ls', 'list my previews')
    .option('--all', 'include ended and failed previews')
    .action(
      guard(
        async (flags: JsonFlag & ApiTarget & { all?: boolean }) =>
          listCommand(await clientFor(flags, ctx.env), output(flags), flags),
        (f) => f,
      ),
    );

  apiCommand(program, 'logs', "a preview's state, status and log lines")
    .argument('<id>', 'preview id')
    .option('-f, --follow', 'keep printing new events until the preview ends (Ctrl-C stops)')
    .action(
      guard(
        async (id: string, flags: JsonFlag & ApiTarget & { follow?: boolean }) =>
          logsCommand(await clientFor(flags, ctx.env), output(flags), id, { ...flags, signal: ctx.signal }),
        (_id, f) => f,
      ),
    );

  apiCommand(program, 'rm', 'stop and remove a preview')
    .argument('<id>', 'preview id')
    .action(
      guard(
        async (id: string, flags: JsonFlag & ApiTarget) =>
          removeCommand(await clientFor(flags, ctx.env), output(flags), id),
        (_id, f) => f,
      ),
    );

  apiCommand(program, 'export', "a preview's database as SQL on stdout (`preview export <id> > dump.sql`)")
    .argument('<id>', 'preview id')
    .action(
      guard(
        async (id: string, flags: JsonFlag & ApiTarget) =>
          exportCommand(await clientFor(flags, ctx.env), output(flags), id),
        (_id, f) => f,
      ),
    );

  apiCommand(program, 'deploy-db', "copy a project's database with its rows into another PostgreSQL database")
    .argument('<projectId>', "the project (the editor's app id)")
    .option('--target <url>', 'the target database, postgres://… (env DEPLOY_DATABASE_URL)')
    .option('--schema <name>', 'the target schema (default public)')
    .option('--replace', 'drop tables of the same names in the target first (same transaction)')
    .option('--drop-preview-schema', "drop the project's preview schema after the deploy")
    .action(
      guard(
        async (projectId: string, flags: JsonFlag & ApiTarget & DeployFlags) =>
          deployCommand(await clientFor(flags, ctx.env), output(flags), projectId, flags, ctx.env),
        (_id, f) => f,
      ),
    );

  apiCommand(
    program,
    'seed',
    "run SQL in a project's database as its preview role (one transaction), or with --script the project's own seed",
  )
    .argument('<projectId>', "the project (the editor's app id)")
    .option('--file <path>', 'the SQL file (default: standard input)')
    .option(
      '--script',
      "the project's seed: its supabase/seed.sql or seed.sql, else package.json scripts.seed run in its preview",
    )
    .action(
      guard(
        async (projectId: string, flags: JsonFlag & ApiTarget & { file?: string; script?: boolean }) =>
          seedCommand(await clientFor(flags, ctx.env), output(flags), projectId, {
            ...(flags.file ? { file: flags.file } : {}),
            ...(flags.script ? { script: true } : {}),
            stdin: ctx.in ?? Readable.from([]),
          }),
        (_id, f) => f,
      ),
    );

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  return exitCode;
}
