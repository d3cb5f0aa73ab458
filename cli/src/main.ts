/**
 * The `preview` command's entry (cli/bin/preview.js runs it through tsx): the one file of the CLI
 * that reads `process.env`, `process.argv` and the signals.
 */
import { runCli } from './program.ts';

const stop = new AbortController();
let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    // A second Ctrl-C while a command is stopping leaves at once.
    if (++signals > 1) process.exit(130);
    stop.abort();
  });

const code = await runCli(process.argv.slice(2), {
  env: process.env,
  out: process.stdout,
  err: process.stderr,
  tty: process.stdout.isTTY === true,
  signal: stop.signal,
  in: process.stdin,
});
process.exitCode = code;
// Lingering handles (a keep-alive socket, a Redis client) must not keep a finished command alive.
process.stdout.write('', () => process.exit(code));
