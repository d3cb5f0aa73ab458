import { readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';

/**
 * The longest a production function may be, in lines (issue 12: "No production function is longer
 * than 200 lines"; CONVENTIONS.md: a function fits on a screen or two).
 */
export const MAX_FUNCTION_LINES = 200;

/**
 * The packages whose `src/` is production code. `testkit` (fakes and test servers) and `bench`
 * (measurements) ship nothing to users and are left out.
 */
export const PRODUCTION_PACKAGES = [
  'tiers',
  'db-isolation',
  'pool-agent',
  'router',
  'cli',
  'browser-runtime',
  'docker/preview-daemon',
] as const;

/** One function, method, accessor, constructor or arrow function and its length. */
export interface FunctionLength {
  /** Path relative to the root that was scanned. */
  file: string;
  /** The function's name, or how it is reached (`createAgent`, `Hub.attach`, `<arrow in x.ts:12>`). */
  name: string;
  /** 1-based line of the function's first token (its leading comments excluded). */
  line: number;
  /** Lines from its first token to its last, both included. */
  lines: number;
}

const isTestFile = (path: string): boolean => /\.test\.tsx?$/.test(path) || /\.d\.ts$/.test(path);

/** Every `.ts`/`.tsx` file under `dir`, recursively, tests, `node_modules` and `dist` left out. */
async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'dist') out.push(...(await sourceFiles(path)));
    } else if (/\.tsx?$/.test(entry.name) && !isTestFile(entry.name)) out.push(path);
  }
  return out;
}

/** The name a reader would search for: its own name, or the variable or property it is assigned to. */
function nameOf(node: ts.FunctionLikeDeclaration, sf: ts.SourceFile): string {
  const own =
    node.name && (ts.isIdentifier(node.name) || ts.isStringLiteral(node.name)) ? node.name.text : '';
  const parent = node.parent;
  const cls =
    ts.isClassLike(parent) && parent.name ? `${parent.name.text}.` : ts.isClassLike(parent) ? '<class>.' : '';
  if (ts.isConstructorDeclaration(node)) return `${cls}constructor`;
  if (own) return `${cls}${own}`;
  if (ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)) return parent.name.text;
  if (ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return parent.name.getText(sf);
  const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  return `<${ts.SyntaxKind[node.kind]} at line ${line + 1}>`;
}

/**
 * The length of every function in one source text (nested functions are listed on their own and
 * also count toward the function that holds them).
 */
export function functionLengths(file: string, text: string): FunctionLength[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TSX);
  const out: FunctionLength[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const fn = node as ts.FunctionLikeDeclaration;
      const first = sf.getLineAndCharacterOfPosition(fn.getStart(sf)).line;
      const last = sf.getLineAndCharacterOfPosition(fn.getEnd()).line;
      out.push({ file, name: nameOf(fn, sf), line: first + 1, lines: last - first + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/**
 * The functions longer than `max` lines in the production sources (`<package>/src/**`, tests
 * excluded) under `root`, longest first.
 * @default packages PRODUCTION_PACKAGES, max MAX_FUNCTION_LINES
 * @throws Error (ENOENT) when a package has no `src/` folder under `root`.
 */
export async function longFunctions(
  root: string,
  options: { packages?: readonly string[]; max?: number } = {},
): Promise<FunctionLength[]> {
  const max = options.max ?? MAX_FUNCTION_LINES;
  const found: FunctionLength[] = [];
  for (const pkg of options.packages ?? PRODUCTION_PACKAGES) {
    for (const path of await sourceFiles(join(root, pkg, 'src'))) {
      const rel = relative(root, path);
      found.push(...functionLengths(rel, await readFile(path, 'utf8')).filter((f) => f.lines > max));
    }
  }
  return found.sort((a, b) => b.lines - a.lines);
}

// `node --import tsx scripts/function-length.ts [max]` lists them.
if (import.meta.filename === resolve(process.argv[1] ?? '')) {
  const max = Number(process.argv[2] ?? MAX_FUNCTION_LINES);
  for (const f of await longFunctions(resolve(import.meta.dirname, '..'), { max }))
    console.log(`${f.lines}\t${f.file}:${f.line}\t${f.name}`);
}
