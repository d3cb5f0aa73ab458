/**
 * Splitting frames under a broadcast payload limit and putting them back together.
 * A chunk is `{c, id, i, n, t}`: connection id, message id, index, count, and a slice of the frame's
 * JSON text. Slices are cut by characters so that even fully escaped JSON (6 bytes per character at
 * worst, `\u00XX`) stays under the limit.
 */
export interface Chunk {
  c: string;
  id: number;
  i: number;
  n: number;
  t: string;
}

/** Control messages share the broadcast event: open and close of a virtual connection. */
export interface Control {
  c: string;
  open?: true;
  close?: number;
  reason?: string;
}

export function chunkText(c: string, id: number, text: string, maxPayloadBytes: number): Chunk[] {
  const size = Math.max(256, Math.floor((maxPayloadBytes - 256) / 6));
  const n = Math.max(1, Math.ceil(text.length / size));
  const out: Chunk[] = [];
  for (let i = 0; i < n; i++) out.push({ c, id, i, n, t: text.slice(i * size, (i + 1) * size) });
  return out;
}

/** Reassembles chunks of one sender; chunks of a message arrive in order (one socket, one topic). */
export class Reassembler {
  #parts = new Map<string, { id: number; parts: string[] }>();
  /** Returns the whole text once its last chunk arrived. */
  push(ch: Chunk): string | undefined {
    if (ch.n === 1) return ch.t;
    let cur = this.#parts.get(ch.c);
    if (!cur || cur.id !== ch.id || ch.i === 0) {
      cur = { id: ch.id, parts: [] };
      this.#parts.set(ch.c, cur);
    }
    if (ch.i !== cur.parts.length) {
      // A chunk went missing: drop the message (the session replays after reconnecting).
      this.#parts.delete(ch.c);
      return undefined;
    }
    cur.parts.push(ch.t);
    if (cur.parts.length < ch.n) return undefined;
    this.#parts.delete(ch.c);
    return cur.parts.join('');
  }
  forget(c: string) {
    this.#parts.delete(c);
  }
}

export function isChunk(x: unknown): x is Chunk {
  const o = x as Chunk;
  return (
    !!o &&
    typeof o.c === 'string' &&
    typeof o.t === 'string' &&
    Number.isInteger(o.i) &&
    Number.isInteger(o.n)
  );
}

/** What the transport and the bridge need of a Supabase client (`SupabaseClient` and `RealtimeClient` fit). */
export interface RealtimeLike {
  channel(
    topic: string,
    options: { config: { broadcast: { self: boolean; ack: boolean }; private?: boolean } },
  ): ChannelLike;
  removeChannel(channel: ChannelLike): Promise<unknown>;
}
export interface ChannelLike {
  on(
    type: 'broadcast',
    filter: { event: string },
    callback: (message: { payload: unknown }) => void,
  ): ChannelLike;
  subscribe(callback?: (status: string, error?: Error) => void): ChannelLike;
  send(message: { type: 'broadcast'; event: string; payload: unknown }): Promise<string>;
}

export const topicFor = (previewId: string) => `preview-sync:${previewId}`;
export const TO_SERVER = 'c2s';
export const TO_CLIENT = 's2c';
/** Hosted Realtime's broadcast payload limit on the smallest plan is 256 KB; stay well under it. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 200 * 1024;
