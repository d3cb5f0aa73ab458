import { ConflictError, NotFoundError } from '@preview/tiers';
import type { DaemonLink } from '@preview/tiers/daemon-sync';
import type WebSocket from 'ws';
import type { SandboxInfo } from './runtime/types.ts';

/** Where a preview is in its life on this node. Only a failed one carries a reason. */
export type PreviewState =
  | { kind: 'starting' }
  | { kind: 'ready' }
  | { kind: 'suspended' }
  | { kind: 'failed'; reason: string };

/** A preview this node serves: its sandbox, the link to its daemon and its open sync relays. */
export interface PreviewRecord {
  readonly id: string;
  readonly box: SandboxInfo;
  readonly link: DaemonLink;
  state: PreviewState;
  readonly relays: Set<WebSocket>;
}

/** What is left of a preview whose sandbox is gone after it failed: why, and its last output. */
export interface PreviewRemains {
  reason: string;
  log: string[];
  /** ms since the epoch. */
  at: number;
}

/**
 * The previews this node serves, by preview id and by sandbox id, and the remains of those that
 * failed and were removed (so their reason and log can still be read; the newest `keepRemains`).
 *
 * @example
 * const table = new PreviewTable();
 * table.add({ id: 'p1', box, link, state: { kind: 'starting' }, relays: new Set() });
 * table.routable('p1'); // the record, or ConflictError when failed / suspended
 */
export class PreviewTable {
  readonly #byId = new Map<string, PreviewRecord>();
  readonly #byBox = new Map<string, string>();
  readonly #remains = new Map<string, PreviewRemains>();
  readonly #keepRemains: number;

  /** @param keepRemains how many removed failed previews to remember. @default 256 */
  constructor(options: { keepRemains?: number } = {}) {
    this.#keepRemains = options.keepRemains ?? 256;
  }

  get size(): number {
    return this.#byId.size;
  }

  ids(): string[] {
    return [...this.#byId.keys()];
  }

  values(): IterableIterator<PreviewRecord> {
    return this.#byId.values();
  }

  find(id: string): PreviewRecord | undefined {
    return this.#byId.get(id);
  }

  /** @throws NotFoundError (`preview_not_found`) */
  get(id: string): PreviewRecord {
    const p = this.#byId.get(id);
    if (!p) throw new NotFoundError('preview_not_found', `no preview ${id} on this node`);
    return p;
  }

  /**
   * The preview, when it may take traffic and edits.
   *
   * @throws NotFoundError; ConflictError `preview_failed` (with the reason) or `preview_suspended`.
   */
  routable(id: string): PreviewRecord {
    const p = this.get(id);
    if (p.state.kind === 'failed')
      throw new ConflictError('preview_failed', `preview ${id} failed: ${p.state.reason}`);
    if (p.state.kind === 'suspended')
      throw new ConflictError('preview_suspended', `preview ${id} is suspended`);
    return p;
  }

  bySandbox(boxId: string): PreviewRecord | undefined {
    const id = this.#byBox.get(boxId);
    return id === undefined ? undefined : this.#byId.get(id);
  }

  add(p: PreviewRecord): PreviewRecord {
    this.#byId.set(p.id, p);
    this.#byBox.set(p.box.id, p.id);
    this.#remains.delete(p.id);
    return p;
  }

  /** Removes the preview; `undefined` when there was none (repeat-safe). */
  remove(id: string): PreviewRecord | undefined {
    const p = this.#byId.get(id);
    if (!p) return undefined;
    this.#byId.delete(id);
    this.#byBox.delete(p.box.id);
    return p;
  }

  /** Moves a preview to `failed` with `reason`; `false` when it had failed already (the first reason stays). */
  fail(p: PreviewRecord, reason: string): boolean {
    if (p.state.kind === 'failed') return false;
    p.state = { kind: 'failed', reason };
    return true;
  }

  /** Keeps why a preview failed and its last output after its sandbox is removed. */
  remember(id: string, remains: PreviewRemains): void {
    this.#remains.delete(id);
    this.#remains.set(id, remains);
    while (this.#remains.size > this.#keepRemains) {
      const oldest = this.#remains.keys().next().value;
      if (oldest === undefined) break;
      this.#remains.delete(oldest);
    }
  }

  remains(id: string): PreviewRemains | undefined {
    return this.#remains.get(id);
  }
}
