import { z } from 'zod';
import { LIMITS } from './limits.ts';
import { utf8Length } from './paths.ts';

/**
 * Envelopes that carry sync wire frames over a pub/sub broadcast (Supabase Realtime) whose messages
 * have a size cap. A frame that fits goes whole (`frame`); a larger one is cut into `parts` pieces of
 * its JSON text (`data`), each envelope under the cap, and reassembled on the other side, where the
 * piece count, the total UTF-8 length and the SHA-256 of the text are checked before it is parsed.
 *
 * @example
 * const envs = await encodeEnvelopes(batch, { from: 'editor-1', id: 'm1', maxMessageBytes: 256 * 1024 });
 * for (const e of envs) await channel.send({ type: 'broadcast', event: 'c2s', payload: e });
 */

/** Broadcast event names: editor → bridge, bridge → editor. */
export const BroadcastEvents = { toSandbox: 'c2s', toEditor: 's2c' } as const;

/** Bytes kept free under the cap for what the transport adds around the payload (header, topic, event). */
export const ENVELOPE_HEADROOM_BYTES = 1024;

const Base = {
  v: z.literal(1),
  from: z.string().min(1).max(128),
  to: z.string().min(1).max(128).optional(),
  id: z.string().min(1).max(64),
};
export const WholeEnvelope = z.object({ ...Base, frame: z.record(z.string(), z.unknown()) });
export const ChunkEnvelope = z.object({
  ...Base,
  part: z.number().int().nonnegative(),
  parts: z.number().int().min(2).max(1_000_000),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lowercase hex SHA-256'),
  data: z.string(),
});
export const Envelope = z.union([WholeEnvelope, ChunkEnvelope]);
export type WholeEnvelope = z.output<typeof WholeEnvelope>;
export type ChunkEnvelope = z.output<typeof ChunkEnvelope>;
export type Envelope = WholeEnvelope | ChunkEnvelope;

/** SHA-256 of a string's UTF-8, lowercase hex (WebCrypto: browsers and Node ≥ 20). */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  let out = '';
  for (const b of new Uint8Array(digest)) out += b.toString(16).padStart(2, '0');
  return out;
}

/** Bytes a character adds to a JSON string literal in UTF-8 (escapes included). */
function jsonCharBytes(text: string, i: number): [bytes: number, units: number] {
  const c = text.charCodeAt(i);
  if (c === 0x22 || c === 0x5c) return [2, 1];
  if (c < 0x20) return [c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6, 1];
  if (c < 0x80) return [1, 1];
  if (c < 0x800) return [2, 1];
  if (c >= 0xd800 && c <= 0xdbff) {
    const d = text.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return [4, 2];
    return [6, 1]; // lone surrogate: JSON.stringify writes \udxxx
  }
  if (c >= 0xdc00 && c <= 0xdfff) return [6, 1];
  return [3, 1];
}

/**
 * Encodes one frame into envelopes, each whose JSON is at most `maxMessageBytes - ENVELOPE_HEADROOM_BYTES`
 * bytes of UTF-8. Never splits a surrogate pair.
 */
export async function encodeEnvelopes(
  frame: object,
  o: { from: string; to?: string; id: string; maxMessageBytes: number },
): Promise<Envelope[]> {
  const budget = o.maxMessageBytes - ENVELOPE_HEADROOM_BYTES;
  if (!Number.isInteger(o.maxMessageBytes) || budget < 1024)
    throw new RangeError(`maxMessageBytes: must be an integer ≥ ${ENVELOPE_HEADROOM_BYTES + 1024}`);
  const base = { v: 1 as const, from: o.from, ...(o.to ? { to: o.to } : {}), id: o.id };
  const whole: WholeEnvelope = { ...base, frame: frame as Record<string, unknown> };
  const text = JSON.stringify(frame);
  if (utf8Length(JSON.stringify(whole)) <= budget) return [whole];
  const bytes = utf8Length(text);
  const sha256 = await sha256Hex(text);
  // Fixed part of a chunk envelope with the widest numbers it can hold, plus the data's quotes.
  const overhead = utf8Length(
    JSON.stringify({ ...base, part: 999_999, parts: 999_999, bytes, sha256, data: '' }),
  );
  const room = budget - overhead;
  const slices: string[] = [];
  let start = 0;
  let i = 0;
  let used = 0;
  while (i < text.length) {
    const [n, units] = jsonCharBytes(text, i);
    if (used + n > room) {
      slices.push(text.slice(start, i));
      start = i;
      used = 0;
    }
    used += n;
    i += units;
  }
  slices.push(text.slice(start));
  return slices.map((data, part) => ({ ...base, part, parts: slices.length, bytes, sha256, data }));
}

export type AssembleResult =
  | { kind: 'frame'; from: string; id: string; text: string }
  | { kind: 'pending' }
  | { kind: 'error'; from: string; id: string; code: 'too_large' | 'invalid_frame'; message: string };

interface Partial {
  from: string;
  id: string;
  parts: number;
  bytes: number;
  sha256: string;
  got: (string | undefined)[];
  received: number;
  buffered: number;
  startedAt: number;
}

export interface ChunkAssemblerOptions {
  /** Largest reassembled frame text, in bytes. Default LIMITS.frameBytes. */
  maxFrameBytes?: number;
  /** Most bytes held across all unfinished frames; past it the newest frame is dropped. Default 64 MiB. */
  maxBufferedBytes?: number;
  /** Most unfinished frames held at once. Default 64. */
  maxPending?: number;
  /** An unfinished frame older than this is dropped by `expire`. Default 30000. */
  timeoutMs?: number;
  now?: () => number;
}

/**
 * Reassembles chunked envelopes with a bounded buffer. Checks every piece against the first one's
 * `parts`/`bytes`/`sha256`, then the joined text's length and SHA-256.
 */
export class ChunkAssembler {
  #o: Required<ChunkAssemblerOptions>;
  #pending = new Map<string, Partial>();
  #buffered = 0;

  constructor(options: ChunkAssemblerOptions = {}) {
    this.#o = {
      maxFrameBytes: options.maxFrameBytes ?? LIMITS.frameBytes,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
      maxPending: options.maxPending ?? 64,
      timeoutMs: options.timeoutMs ?? 30_000,
      now: options.now ?? Date.now,
    };
    for (const k of ['maxFrameBytes', 'maxBufferedBytes', 'maxPending', 'timeoutMs'] as const)
      if (!(Number.isFinite(this.#o[k]) && this.#o[k] > 0))
        throw new RangeError(`options.${k}: must be a positive number`);
  }

  /** Bytes held for unfinished frames. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  get pending(): number {
    return this.#pending.size;
  }

  async accept(env: Envelope): Promise<AssembleResult> {
    if ('frame' in env) return { kind: 'frame', from: env.from, id: env.id, text: JSON.stringify(env.frame) };
    const key = `${env.from}\u0000${env.id}`;
    const fail = (code: 'too_large' | 'invalid_frame', message: string): AssembleResult => {
      this.#drop(key);
      return { kind: 'error', from: env.from, id: env.id, code, message };
    };
    if (env.bytes > this.#o.maxFrameBytes)
      return fail('too_large', `frame: ${env.bytes} bytes > ${this.#o.maxFrameBytes} (rule frame_size)`);
    if (env.part >= env.parts) return fail('invalid_frame', `part: ${env.part} ≥ parts ${env.parts}`);
    let p = this.#pending.get(key);
    if (!p) {
      if (this.#pending.size >= this.#o.maxPending)
        return fail('too_large', `reassembly: more than ${this.#o.maxPending} frames unfinished`);
      p = {
        from: env.from,
        id: env.id,
        parts: env.parts,
        bytes: env.bytes,
        sha256: env.sha256,
        got: new Array(env.parts),
        received: 0,
        buffered: 0,
        startedAt: this.#o.now(),
      };
      this.#pending.set(key, p);
    } else if (p.parts !== env.parts || p.bytes !== env.bytes || p.sha256 !== env.sha256) {
      return fail('invalid_frame', 'chunk: parts, bytes or sha256 differ from the first chunk');
    }
    if (p.got[env.part] !== undefined) return { kind: 'pending' }; // duplicate delivery
    const n = env.data.length;
    if (this.#buffered + n > this.#o.maxBufferedBytes)
      return fail('too_large', `reassembly buffer full (${this.#o.maxBufferedBytes} bytes)`);
    p.got[env.part] = env.data;
    p.received++;
    p.buffered += n;
    this.#buffered += n;
    if (p.buffered > p.bytes)
      return fail('invalid_frame', `chunks: more data than the declared ${p.bytes} bytes`);
    if (p.received < p.parts) return { kind: 'pending' };
    this.#drop(key);
    const text = p.got.join('');
    const len = utf8Length(text);
    if (len !== p.bytes) return fail('invalid_frame', `chunks: ${len} bytes, declared ${p.bytes}`);
    if ((await sha256Hex(text)) !== p.sha256) return fail('invalid_frame', 'chunks: sha256 mismatch');
    return { kind: 'frame', from: p.from, id: p.id, text };
  }

  /** Drops unfinished frames older than the timeout; returns them so the sender can be told. */
  expire(): Array<{ from: string; id: string }> {
    const cutoff = this.#o.now() - this.#o.timeoutMs;
    const out: Array<{ from: string; id: string }> = [];
    for (const [key, p] of this.#pending)
      if (p.startedAt <= cutoff) {
        this.#drop(key);
        out.push({ from: p.from, id: p.id });
      }
    return out;
  }

  clear(): void {
    this.#pending.clear();
    this.#buffered = 0;
  }

  #drop(key: string) {
    const p = this.#pending.get(key);
    if (!p) return;
    this.#buffered -= p.buffered;
    this.#pending.delete(key);
  }
}
