import { assertValidPath, InvalidInputError, LIMITS, type ProjectFiles } from '@preview/tiers';

/** Decoded project files: path → bytes or text. Paths checked with the shared rules. */
export type DecodedFiles = Map<string, string | Uint8Array>;

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Validates every path (field named in the error) and decodes base64 content. */
export function decodeFiles(files: ProjectFiles): DecodedFiles {
  if (!files || typeof files !== 'object')
    throw new InvalidInputError('invalid_files', 'files: must be an object');
  const entries = Object.entries(files);
  if (entries.length > LIMITS.projectFiles)
    throw new InvalidInputError('too_many_files', `files: at most ${LIMITS.projectFiles} files`);
  const out: DecodedFiles = new Map();
  for (const [path, v] of entries) {
    assertValidPath(path, `files["${path}"]`);
    if (typeof v === 'string') out.set(path, v);
    else if (v && typeof v.content === 'string' && (v.encoding === 'utf8' || v.encoding === 'base64'))
      out.set(path, v.encoding === 'utf8' ? v.content : fromBase64(v.content));
    else
      throw new InvalidInputError(
        'invalid_files',
        `files["${path}"]: must be a string or {content, encoding}`,
      );
  }
  return out;
}

export function checkPath(path: string): void {
  assertValidPath(path, 'path');
}

/** A tiny typed event emitter. */
export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Set<(p: never) => void>>();
  on<E extends keyof Events>(event: E, listener: (payload: Events[E]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as (p: never) => void);
    return () => set.delete(listener as (p: never) => void);
  }
  emit<E extends keyof Events>(event: E, payload: Events[E]): void {
    for (const l of this.#listeners.get(event) ?? []) (l as (p: Events[E]) => void)(payload);
  }
  clear(): void {
    this.#listeners.clear();
  }
}
