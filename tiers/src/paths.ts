import { InvalidInputError } from './errors.ts';
import { LIMITS } from './limits.ts';

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Top-level directories that belong to the sandbox, not the user: installed dependencies, the
 * repository, and the preview-daemon's own temp/ledger directory. No op may touch them.
 */
export const RESERVED_DIRS: readonly string[] = ['node_modules', '.git', '.preview-tmp'];

/**
 * Why a project path is not acceptable, or `undefined` when it is. Rules: relative, already
 * normalised (no `.`/`..`/empty segments, no trailing slash), no NUL or control characters, no
 * backslash, at most `LIMITS.pathBytes` bytes and `LIMITS.pathDepth` segments, and not one of
 * `RESERVED_DIRS` or inside one. `message` states the rule once; `rule` names it (callers add
 * `(rule <name>)` once where they show both).
 */
export function pathProblem(path: string): { rule: string; message: string } | undefined {
  if (typeof path !== 'string' || path.length === 0) return { rule: 'empty', message: 'must not be empty' };
  if (path.includes('\u0000')) return { rule: 'nul', message: 'must not contain NUL' };
  if (hasControlChar(path)) return { rule: 'control_char', message: 'must not contain control characters' };
  if (path.includes('\\')) return { rule: 'backslash', message: 'must not contain a backslash' };
  if (path.startsWith('/')) return { rule: 'absolute', message: 'must be relative' };
  if (/^[a-zA-Z]:/.test(path)) return { rule: 'absolute', message: 'must be relative (drive letter)' };
  if (utf8Length(path) > LIMITS.pathBytes)
    return { rule: 'too_long', message: `must be at most ${LIMITS.pathBytes} bytes` };
  const segments = path.split('/');
  if (segments.length > LIMITS.pathDepth)
    return { rule: 'too_deep', message: `must be at most ${LIMITS.pathDepth} levels deep` };
  for (const s of segments) {
    if (s === '..') return { rule: 'traversal', message: 'must not contain ".."' };
    if (s === '' || s === '.')
      return { rule: 'not_normalised', message: 'must be normalised (no empty or "." segments)' };
  }
  const first = segments[0] as string;
  if (RESERVED_DIRS.includes(first)) return { rule: 'reserved', message: `must not be inside ${first}/` };
  return undefined;
}

/** Throws `InvalidInputError('invalid_path')` naming the field, the path and the rule. */
export function assertValidPath(path: string, field = 'path'): void {
  const p = pathProblem(path);
  if (p)
    throw new InvalidInputError(
      'invalid_path',
      `${field}: ${p.message} (rule ${p.rule}, got ${JSON.stringify(path)})`,
    );
}

/** UTF-8 byte length without allocating (works in browsers and Node alike). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
