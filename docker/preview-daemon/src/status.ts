import type { PreviewPhase } from '@preview/tiers';
import type { Logger, LogRing } from './log.ts';

/** Least time between two status frames that only carry new log lines (npm's output), in ms. */
export const LOG_FRAME_MS = 250;

/** What the status needs of a sync socket: its state (1 = open) and a way to send a text frame. */
export interface StatusSocket {
  readonly readyState: number;
  send(text: string): void;
}

/**
 * The preview's phase and message, and the sync sockets that hear about them: each change is logged
 * and broadcast as a `status` frame (PROTOCOL.md) carrying the last 20 log lines. Log lines that
 * arrive while an install runs are broadcast too, at most one frame per `logFrameMs`.
 *
 * @example
 * const status = new DaemonStatus({ ring, log, onReady: () => gcWhenIdle() });
 * status.set('ready');
 */
export class DaemonStatus<S extends StatusSocket = StatusSocket> {
  /** The open sync sockets (the sync endpoint adds and removes them). */
  readonly clients = new Set<S>();
  readonly ring: LogRing;
  #phase: PreviewPhase = 'starting';
  #message: string | undefined = 'starting';
  #logTimer: NodeJS.Timeout | undefined;
  readonly #log: Logger;
  readonly #onReady: () => void;
  readonly #logFrameMs: number;

  /** `onReady` runs each time the phase becomes `ready`. @default logFrameMs LOG_FRAME_MS */
  constructor(o: { ring: LogRing; log: Logger; onReady: () => void; logFrameMs?: number }) {
    this.ring = o.ring;
    this.#log = o.log;
    this.#onReady = o.onReady;
    this.#logFrameMs = o.logFrameMs ?? LOG_FRAME_MS;
  }

  get phase(): PreviewPhase {
    return this.#phase;
  }

  get message(): string | undefined {
    return this.#message;
  }

  /** Sends `text` to every open sync socket. */
  broadcast(text: string): void {
    for (const c of this.clients) if (c.readyState === 1) c.send(text);
  }

  /** The `status` frame as JSON text: phase, message (when there is one), last 20 log lines, time. */
  frame(): string {
    return JSON.stringify({
      type: 'status',
      phase: this.#phase,
      ...(this.#message ? { message: this.#message } : {}),
      log: this.ring.tail(20),
      at: Date.now(),
    });
  }

  /** Moves to phase `p` with message `msg`; nothing happens when both are already so. */
  set(p: PreviewPhase, msg?: string): void {
    if (p === this.#phase && msg === this.#message) return;
    this.#phase = p;
    this.#message = msg;
    this.#log.info({ phase: p, message: msg }, 'phase');
    this.broadcast(this.frame());
    if (p === 'ready') this.#onReady();
  }

  /** A log line arrived: kept in the ring, and carried by a (throttled) frame while installing. */
  readonly onLog = (text: string): void => {
    this.ring.push(text);
    if (this.#phase !== 'installing' || this.#logTimer) return;
    this.#logTimer = setTimeout(() => {
      this.#logTimer = undefined;
      this.broadcast(this.frame());
    }, this.#logFrameMs);
  };

  /** Drops a pending log frame. */
  close(): void {
    clearTimeout(this.#logTimer);
  }
}
