import { connect } from 'node:net';

/**
 * How the agent reaches a sandbox's daemon port:
 * - `address`: the container's own address on the preview network (`http://172.18.0.5:17380`). One
 *   hop: no userland proxy between the agent and the daemon. Works wherever the host routes to the
 *   bridge (Docker Engine on Linux, where the agent runs).
 * - `published`: the port Docker publishes on the host's 127.0.0.1, through Docker's userland proxy
 *   (docker-proxy: one more process that copies every byte of every request, HMR message and sync
 *   frame). Works everywhere, including engines whose bridge the host cannot reach (Docker Desktop,
 *   rootless Docker).
 * - `auto`: `address` when a connection to the first running sandbox's address gets an answer (a
 *   refusal counts: the sandbox's own network stack answered), else `published`.
 */
export type UpstreamMode = 'auto' | 'address' | 'published';

/** Error codes of a TCP connect that reached the other side: something there answered. */
const ANSWERED = new Set(['ECONNREFUSED', 'ECONNRESET']);

/**
 * Whether the host reaches `address:port` over TCP: connected, or refused by the other side's stack.
 * No answer within `timeoutMs`, or no route, is `false`.
 *
 * @example
 * await hostReaches('172.18.0.5', 17380); // true on Linux, false under Docker Desktop
 */
export function hostReaches(address: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port });
    const done = (reached: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reached);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', (e: NodeJS.ErrnoException) => done(ANSWERED.has(e.code ?? '')));
  });
}

/**
 * Picks a sandbox's upstream URL by the {@link UpstreamMode}. In `auto` the first sandbox with an
 * address is probed once (`hostReaches`) and the answer holds for every later one.
 *
 * @example
 * const pick = new UpstreamPicker('auto', (mode) => log.info({ mode }, 'sandbox upstream'));
 * await pick.upstream({ address: '172.18.0.5', published: 'http://127.0.0.1:32768', port: 17380 });
 */
export class UpstreamPicker {
  readonly #mode: UpstreamMode;
  readonly #onDecided: ((mode: 'address' | 'published') => void) | undefined;
  readonly #probe: (address: string, port: number) => Promise<boolean>;
  #direct: Promise<boolean> | undefined;
  #reached = false;

  /**
   * @param onDecided told once which way `auto` went
   * @param probe how reachability is checked @default hostReaches
   */
  constructor(
    mode: UpstreamMode,
    onDecided?: (mode: 'address' | 'published') => void,
    probe: (address: string, port: number) => Promise<boolean> = hostReaches,
  ) {
    this.#mode = mode;
    this.#onDecided = onDecided;
    this.#probe = probe;
  }

  /**
   * Whether a new sandbox still needs its daemon port published on the host: not once the agent
   * reaches sandboxes at their own address (`address`, or `auto` after the host reached one), as
   * each published port costs a docker-proxy process (~0.7 MiB), NAT rules set by a dozen iptables
   * runs at every start and stop, and engine work on the create path.
   */
  get publishes(): boolean {
    return this.#mode === 'published' || (this.#mode === 'auto' && !this.#reached);
  }

  /**
   * The URL to reach a sandbox by: `http://<address>:<port>` or `published` (empty when the sandbox
   * has neither). `running`: the sandbox runs unpaused, so a probe of its address means something.
   */
  async upstream(s: {
    address: string | undefined;
    port: number;
    published: string;
    running: boolean;
  }): Promise<string> {
    const direct = s.address ? `http://${s.address}:${s.port}` : undefined;
    if (!direct || this.#mode === 'published') return s.published;
    if (this.#mode === 'address') return direct;
    if (!this.#direct) {
      // A stopped or paused sandbox answers nothing either way: decide on a running one.
      if (!s.running) return s.published || direct;
      this.#direct = this.#probe(s.address!, s.port).then((reached) => {
        this.#reached = reached;
        this.#onDecided?.(reached ? 'address' : 'published');
        return reached;
      });
    }
    const reached = await this.#direct;
    return reached || !s.published ? direct : s.published;
  }
}
