import { DaemonLink, openDaemonSync } from '../daemon-sync/index.ts';
import { InvalidInputError } from '../errors.ts';
import type { SyncChannel } from '../types.ts';
import { type Ack, FileBatch } from '../wire.ts';
import type { FlyEdge } from './fly-edge.ts';

/**
 * A file batch checked against the wire schema.
 * @throws InvalidInputError `invalid_path` when a `path`, `from` or `to` is bad, else `invalid_batch`;
 * the message names up to five fields (`batch.ops.0.path: ...`).
 */
export function parseBatch(batch: unknown): FileBatch {
  const parsed = FileBatch.safeParse(batch);
  if (parsed.success) return parsed.data;
  throw new InvalidInputError(
    parsed.error.issues.some(
      (i) => i.path.includes('path') || i.path.includes('from') || i.path.includes('to'),
    )
      ? 'invalid_path'
      : 'invalid_batch',
    parsed.error.issues
      .slice(0, 5)
      .map((i) => `batch.${i.path.map(String).join('.')}: ${i.message}`)
      .join('; '),
  );
}

/**
 * The tier's connections to its daemons' sync sockets through Fly's edge: one `apply` link per
 * preview (reopened on use after a drop or a move to another machine) and the channels handed out
 * by `openSync`, all closed by {@link close}.
 */
export class FlySync {
  readonly #edge: Pick<FlyEdge, 'wsUrl' | 'tokenFor' | 'headers'>;
  readonly #links = new Map<string, { machineId: string; link: DaemonLink }>();
  readonly #channels = new Set<SyncChannel>();

  constructor(edge: Pick<FlyEdge, 'wsUrl' | 'tokenFor' | 'headers'>) {
    this.#edge = edge;
  }

  /** Sends a batch over the preview's link and resolves with the daemon's ack (60 s at most). */
  async apply(previewId: string, machineId: string, batch: FileBatch, signal?: AbortSignal): Promise<Ack> {
    return await this.#linkFor(previewId, machineId).send(batch, {
      timeoutMs: 60_000,
      ...(signal ? { signal } : {}),
    });
  }

  /** A new sync channel to the preview's daemon, closed with the tier. */
  async openSync(previewId: string, machineId: string, signal?: AbortSignal): Promise<SyncChannel> {
    const ch = await openDaemonSync({
      url: this.#edge.wsUrl,
      token: this.#edge.tokenFor(previewId),
      headers: this.#edge.headers(machineId),
      signal,
    });
    this.#channels.add(ch);
    ch.onClose(() => this.#channels.delete(ch));
    return ch;
  }

  /** Closes the preview's link (repeat-safe). */
  closeLink(previewId: string): void {
    this.#links.get(previewId)?.link.close();
    this.#links.delete(previewId);
  }

  /** Closes every channel and link. */
  close(): void {
    for (const c of this.#channels) c.close();
    this.#channels.clear();
    for (const id of [...this.#links.keys()]) this.closeLink(id);
  }

  /** The `apply` connection to a preview's daemon (one per preview, reopened on use after a drop). */
  #linkFor(previewId: string, machineId: string): DaemonLink {
    const held = this.#links.get(previewId);
    if (held?.machineId === machineId) return held.link;
    held?.link.close();
    const link = new DaemonLink({
      url: this.#edge.wsUrl,
      token: this.#edge.tokenFor(previewId),
      headers: this.#edge.headers(machineId),
      tier: 'fly',
    });
    this.#links.set(previewId, { machineId, link });
    return link;
  }
}
