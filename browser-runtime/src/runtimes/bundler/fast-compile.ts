import { init as lexerReady, parse as parseModule } from 'es-module-lexer';
import type { TransformOptions, TransformResult } from 'esbuild-wasm';

/** esbuild's `transform` (esbuild-wasm in the worker, native esbuild in Node tests). */
export type Transform = (input: string, options: TransformOptions) => Promise<TransformResult>;

/** How an import specifier of the module is rewritten: the new specifier, or undefined (the slow path). */
export type ImportRewrite = (spec: string) => { url: string; dep?: string } | 'keep' | undefined;

/**
 * The edit path's compile of one JS/TS/JSX/TSX module: esbuild's `transform` (no plugin round trips,
 * a few milliseconds), then its import specifiers rewritten from `es-module-lexer`'s offsets. Returns
 * undefined whenever it cannot be sure (a syntax error, an import `rewrite` cannot resolve, an export
 * it cannot name): the caller then compiles the module with esbuild's `build`, which reports errors
 * with their locations. `exports` maps each export to a local binding (for React Refresh).
 */
export async function fastCompile(
  transform: Transform,
  path: string,
  source: string,
  options: TransformOptions,
  rewrite: ImportRewrite,
): Promise<{ code: string; deps: string[]; exports: Array<[string, string]>; star: boolean } | undefined> {
  let code: string;
  try {
    code = (await transform(source, { ...options, sourcefile: path, format: 'esm' })).code;
    await lexerReady;
  } catch {
    return undefined;
  }
  let imports: ReturnType<typeof parseModule>[0];
  let exports: ReturnType<typeof parseModule>[1];
  try {
    [imports, exports] = parseModule(code);
  } catch {
    return undefined;
  }
  const deps = new Set<string>();
  const edits: Array<{ s: number; e: number; text: string }> = [];
  let star = false;
  for (const imp of imports) {
    if (imp.d === -2) continue; // import.meta
    if (imp.n === undefined) {
      if (imp.d >= 0) continue; // import(expression): the browser resolves it at run time
      return undefined;
    }
    if (imp.d === -1 && /^export\s*\*/.test(code.slice(imp.ss, imp.s))) star = true;
    const to = rewrite(imp.n);
    if (to === undefined) return undefined;
    if (to === 'keep') continue;
    if (to.dep) deps.add(to.dep);
    // A dynamic import's span includes its quotes.
    edits.push({ s: imp.s, e: imp.e, text: imp.d >= 0 ? JSON.stringify(to.url) : to.url });
  }
  const named: Array<[string, string]> = [];
  let defaultExpr: { ss: number; e: number } | undefined;
  for (const ex of exports) {
    if (ex.ln) named.push([ex.n, ex.ln]);
    else if (ex.n === 'default') {
      // `export default App;` names a binding; `export default <expression>` gets one.
      const rest = /^\s*([A-Za-z_$][\w$]*)\s*;?\s*(?:\n|$)/.exec(code.slice(ex.e));
      if (rest?.[1] && !['function', 'class', 'async'].includes(rest[1])) named.push(['default', rest[1]]);
      else defaultExpr = { ss: ex.ss, e: ex.e };
    } else return undefined;
  }
  if (defaultExpr) {
    edits.push({ s: defaultExpr.ss, e: defaultExpr.e, text: 'const __preview_default__ =' });
    named.push(['default', '__preview_default__']);
  }
  edits.sort((a, b) => b.s - a.s);
  for (const ed of edits) code = code.slice(0, ed.s) + ed.text + code.slice(ed.e);
  if (defaultExpr) code += '\nexport { __preview_default__ as default };\n';
  return { code, deps: [...deps], exports: named, star };
}
