import { FileOp, Seq, ServerFrame } from '@preview/tiers';
import { z } from 'zod';
import type { PubSub } from '../infra/pubsub.ts';
import type { SyncLogger } from './editor-socket.ts';

/**
 * Messages between router replicas about one preview, on the pub/sub channel `sync:<previewId>`.
 * Parsed at the boundary: a message from another process is never trusted by shape.
 */
export const BusMessage = z.discriminatedUnion('kind', [
  /**
   * A batch of editor client `client` (its own `seq`), addressed to the owner whose lease token is
   * `owner`. `ops: null`: refused at the edge; the seq still takes its place in the client's order.
   */
  z.object({
    kind: z.literal('batch'),
    owner: z.string().min(1),
    client: z.string().min(1),
    seq: Seq,
    ops: z.array(FileOp).nullable(),
  }),
  /** A frame for the editors of `client`, or for all of them; `replica` sent it (and delivered its own). */
  z.object({
    kind: z.literal('frame'),
    replica: z.string().min(1),
    client: z.string().min(1).optional(),
    frame: ServerFrame,
  }),
  /** The replica holding lease token `owner` now owns the preview's sandbox channel. */
  z.object({ kind: z.literal('owner'), owner: z.string().min(1) }),
  /** The preview ended: every replica closes its editors and lets go of it. */
  z.object({ kind: z.literal('end'), reason: z.string().max(123) }),
  /** The preview moved to another tier: editors reconnect and replay toward its new channel. */
  z.object({ kind: z.literal('moved'), reason: z.string().max(123) }),
  /** Close client `client`'s sockets with `code` (they reconnect and replay). */
  z.object({
    kind: z.literal('close'),
    client: z.string().min(1),
    code: z.number().int(),
    reason: z.string().max(123),
  }),
]);
export type BusMessage = z.output<typeof BusMessage>;

/**
 * One preview's side of the cross-replica bus: publishes `BusMessage`s (fire and forget, failures
 * logged) and hands parsed ones to the subscriber; a message that does not parse is dropped.
 *
 * @example
 * const bus = new SyncBus({ pubsub, previewId, log });
 * const off = await bus.subscribe((m) => { if (m.kind === 'owner') ... });
 * bus.publish({ kind: 'owner', owner: 'replica-a#1' });
 */
export class SyncBus {
  readonly channel: string;
  readonly previewId: string;
  readonly #pubsub: PubSub;
  readonly #log: SyncLogger;

  constructor(o: { pubsub: PubSub; previewId: string; log: SyncLogger }) {
    this.channel = `sync:${o.previewId}`;
    this.previewId = o.previewId;
    this.#pubsub = o.pubsub;
    this.#log = o.log;
  }

  publish(message: BusMessage): void {
    this.#pubsub
      .publish(this.channel, message)
      .catch((err: unknown) => this.#log.warn({ err, previewId: this.previewId }, 'sync publish failed'));
  }

  subscribe(handler: (message: BusMessage) => void): Promise<() => Promise<void>> {
    return this.#pubsub.subscribe(this.channel, (raw) => {
      const r = BusMessage.safeParse(raw);
      if (r.success) handler(r.data);
      else
        this.#log.warn({ previewId: this.previewId, issue: r.error.issues[0] }, 'sync bus: message dropped');
    });
  }
}
