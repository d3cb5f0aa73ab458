/**
 * Where a build or runtime error points: the file, 1-based line and column, and the message.
 * `file`, `line` and `column` are absent when the message names no location.
 */
export interface ErrorLocation {
  file?: string;
  line?: number;
  column?: number;
  /** The message without its location prefix (first non-empty line kept in full). */
  message: string;
}

/** Sandbox roots that are not part of the project's own paths (`/app/src/App.tsx` → `src/App.tsx`). */
const SANDBOX_ROOTS = [/^\/app\//, /^\/home\/project\//, /^\/project\//, /^\/workspace\//];

const SOURCE = String.raw`[\w@~./\\-]+\.(?:[cm]?[jt]sx?|vue|svelte|css|scss|less|html|json|mdx?)`;

/** `src/App.tsx:3:7: ERROR: text` (esbuild), `src/App.tsx:3:7 text`, `at f (src/App.tsx:3:7)`. */
const FILE_LINE_COL = new RegExp(`(${SOURCE}):(\\d+)(?::(\\d+))?:?\\s*(.*)`);
/** `src/App.tsx: Unexpected token (3:7)` (Babel, Vite's React plugin). */
const FILE_THEN_POS = new RegExp(`(${SOURCE}):\\s+(.*?)\\s*\\((\\d+):(\\d+)\\)`);
/** `file: src/App.tsx:3:7` (Vite's overlay text). */
const VITE_FILE = new RegExp(`file:\\s*(${SOURCE})(?::(\\d+))?(?::(\\d+))?`);

const relative = (file: string): string => {
  let f = file.replace(/^file:\/\//, '').replace(/\\/g, '/');
  for (const root of SANDBOX_ROOTS) f = f.replace(root, '');
  return f.replace(/^\.\//, '').replace(/^\//, '');
};

const clean = (s: string): string =>
  s
    .replace(/^\s*(?:✘\s*)?\[?ERROR\]?:?\s*/i, '')
    .replace(/^\s*error:\s*/i, '')
    .trim();

/**
 * Reads the location out of an error message as esbuild, Vite, Babel and V8 stack lines print it.
 * Pure; never throws.
 *
 * @example
 * parseErrorLocation('src/App.jsx:3:7: ERROR: Unexpected "}"')
 * // → { file: 'src/App.jsx', line: 3, column: 7, message: 'Unexpected "}"' }
 * parseErrorLocation('/app/src/App.jsx: Unexpected token (4:2)')
 * // → { file: 'src/App.jsx', line: 4, column: 2, message: 'Unexpected token' }
 */
export function parseErrorLocation(text: string): ErrorLocation {
  const full = String(text ?? '').trim();
  const first =
    full
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? '';
  for (const line of full.split('\n')) {
    const pos = FILE_THEN_POS.exec(line);
    if (pos)
      return {
        file: relative(pos[1]!),
        line: Number(pos[3]),
        column: Number(pos[4]),
        message: clean(pos[2]!) || first,
      };
    const v = VITE_FILE.exec(line);
    if (v)
      return {
        file: relative(v[1]!),
        ...(v[2] ? { line: Number(v[2]) } : {}),
        ...(v[3] ? { column: Number(v[3]) } : {}),
        message: clean(first),
      };
    const m = FILE_LINE_COL.exec(line);
    if (m) {
      const rest = clean(m[4] ?? '');
      return {
        file: relative(m[1]!),
        line: Number(m[2]),
        ...(m[3] ? { column: Number(m[3]) } : {}),
        message: rest && !/^\)?$/.test(rest) ? rest : clean(first),
      };
    }
  }
  return { message: clean(first) || full };
}
