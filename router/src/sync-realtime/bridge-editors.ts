import type { SyncSocket } from '../sync/hub.ts';
import type { BridgeReplies } from './bridge-replies.ts';
import type { BridgeHub } from './bridge-types.ts';

const encoder = new TextEncoder();

/** One editor (a broadcast `from`) as a virtual socket on the sync hub. */
export interface VirtualEditor {
  from: string;
  socket: SyncSocket;
  onMessage: ((text: string | undefined, bytes: number) => void) | undefined;
  onClose: (() => void) | undefined;
  /** Reply bytes queued toward this editor, not yet broadcast. */
  buffered: number;
  closed: boolean;
}

/** What {@link BridgeEditors} needs. */
export interface BridgeEditorsContext {
  replies: Pick<BridgeReplies, 'send' | 'resync'>;
  hub: BridgeHub;
  previewId: string;
  userId: string;
  /** Most editors at once; past it the least recently heard one is told to resync. */
  maxEditors: number;
}

/**
 * The editors a bridge serves, least recently heard first. A hello connects an editor (a new virtual
 * socket handed to the hub, the old one ended); its other frames go to its socket. What the hub sends
 * on a socket is broadcast to that editor; when the hub closes one, the editor is told to resync.
 */
export class BridgeEditors {
  readonly #ctx: BridgeEditorsContext;
  readonly #byFrom = new Map<string, VirtualEditor>();

  constructor(ctx: BridgeEditorsContext) {
    this.#ctx = ctx;
  }

  get size(): number {
    return this.#byFrom.size;
  }

  /** The editors now, least recently heard first. */
  all(): VirtualEditor[] {
    return [...this.#byFrom.values()];
  }

  /**
   * A (re)connect: ends the editor's old socket, makes room under `maxEditors` (the stalest editors
   * are dropped and told to resync), hands a new socket to the hub and delivers the hello on it.
   */
  connect(from: string, helloText: string): void {
    const prev = this.#byFrom.get(from);
    if (prev) this.drop(prev);
    while (this.#byFrom.size >= this.#ctx.maxEditors) {
      const stalest = this.#byFrom.values().next().value as VirtualEditor;
      this.drop(stalest);
      this.#ctx.replies.resync(stalest.from, 'too many editors on this preview');
    }
    const ed = this.#open(from);
    this.#byFrom.set(from, ed);
    this.#ctx.hub.handleSocket(ed.socket, { previewId: this.#ctx.previewId, userId: this.#ctx.userId });
    ed.onMessage?.(helloText, encoder.encode(helloText).length);
  }

  /** Delivers a frame to the editor's socket (it becomes the most recently heard); `false` if unknown. */
  deliver(from: string, text: string): boolean {
    const ed = this.#byFrom.get(from);
    if (!ed) return false;
    this.#byFrom.delete(from);
    this.#byFrom.set(from, ed);
    ed.onMessage?.(text, encoder.encode(text).length);
    return true;
  }

  /** Ends an editor's virtual socket on the hub's side (the hub forgets it; its pending batches stay replayable). */
  drop(ed: VirtualEditor): void {
    if (ed.closed) return;
    ed.closed = true;
    if (this.#byFrom.get(ed.from) === ed) this.#byFrom.delete(ed.from);
    ed.onClose?.();
  }

  #open(from: string): VirtualEditor {
    const { replies } = this.#ctx;
    const drop = (ed: VirtualEditor) => this.drop(ed);
    const ed: VirtualEditor = {
      from,
      onMessage: undefined,
      onClose: undefined,
      buffered: 0,
      closed: false,
      socket: {
        send(text) {
          if (ed.closed) return;
          let frame: object;
          try {
            frame = JSON.parse(text) as object;
          } catch {
            return;
          }
          replies.send(from, frame, ed);
        },
        close(code, reason) {
          if (ed.closed) return;
          // The hub let go of this editor (gap in its seqs, slow consumer, overload, shutdown): it
          // reconnects and replays, through whichever bridge runs by then.
          drop(ed);
          replies.resync(from, `${code} ${reason}`);
        },
        get bufferedAmount() {
          return ed.buffered;
        },
        onMessage(listener) {
          ed.onMessage = listener;
        },
        onClose(listener) {
          ed.onClose = listener;
        },
      },
    };
    return ed;
  }
}
