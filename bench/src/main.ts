/**
 * `npm run bench -- <name> [--flags]`: runs `bench/src/<name>.ts`, whose default export is an async
 * function returning the result object. The result is written to `bench/results/<name>.json` and
 * printed as one JSON object on the last line of output.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const here = import.meta.dirname;
const name = process.argv[2];
const available = (await readdir(here))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'main.ts' && !f.startsWith('_'))
  .map((f) => f.slice(0, -3));
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <name>\navailable: ${available.join(', ')}\n`);
  process.exit(2);
}
const mod = (await import(join(here, `${name}.ts`))) as {
  default: (args: string[]) => Promise<Record<string, unknown>>;
};
const result = await mod.default(process.argv.slice(3));
const line = JSON.stringify({ bench: name, ...result });
await writeFile(join(here, '..', 'results', `${name}.json`), `${line}\n`);
process.stdout.write(`${line}\n`);
process.exit(0);
