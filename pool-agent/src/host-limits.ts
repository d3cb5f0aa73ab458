import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The kernel's inotify limits (`fs.inotify.*`, inotify(7)). Both are per user id, and count across
 * every container whose processes run as that uid: all previews on a node share them.
 */
export interface InotifyLimits {
  /** `max_user_instances`: inotify file descriptors per uid (each Node process that watches holds one). */
  maxUserInstances: number;
  /** `max_user_watches`: watched directories and files per uid, across its instances. */
  maxUserWatches: number;
}

/**
 * inotify instances one preview holds: its daemon (Vite or Metro in process, one libuv inotify
 * descriptor) and the app's own watching processes (a Next or Nuxt dev server, nodemon, tsx watch,
 * a test runner in watch mode), with headroom.
 */
export const INOTIFY_INSTANCES_PER_PREVIEW = 4;
/**
 * inotify watches one preview holds: one per watched directory of the project (node_modules, .git
 * and the daemon's temp dir are ignored by the daemon's watcher; an app's own watcher may not).
 */
export const INOTIFY_WATCHES_PER_PREVIEW = 8_192;
/** What the node's own processes (dockerd, containerd, systemd, the agent) hold besides previews. */
const HOST_INSTANCES = 32;

/**
 * The sysctl values docs/deploy.md sets on every node; {@link inotifyShortfall} asks for more only
 * when the node's slots need it.
 */
export const RECOMMENDED_INOTIFY: InotifyLimits = { maxUserInstances: 8_192, maxUserWatches: 1_048_576 };

/**
 * Reads the limits from procfs (Linux only).
 *
 * @param dir where the sysctls are; a test passes a folder of its own. @default `/proc/sys/fs/inotify`
 * @returns `undefined` where the files do not exist or do not hold a number (not Linux, no procfs)
 */
export async function readInotifyLimits(dir = '/proc/sys/fs/inotify'): Promise<InotifyLimits | undefined> {
  const read = async (name: string) => {
    const n = Number.parseInt(await readFile(join(dir, name), 'utf8'), 10);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: not a count`);
    return n;
  };
  try {
    return {
      maxUserInstances: await read('max_user_instances'),
      maxUserWatches: await read('max_user_watches'),
    };
  } catch {
    return undefined;
  }
}

/** One limit that is too low for the node's previews. */
export interface InotifyShortfall {
  /** The sysctl, e.g. `fs.inotify.max_user_instances`. */
  sysctl: string;
  /** What it is now. */
  current: number;
  /** What the node's slots need (never less than {@link RECOMMENDED_INOTIFY}'s value when raising). */
  wanted: number;
}

/**
 * Which limits are too low for `slots` previews. A preview past the instance limit gets EMFILE from
 * `inotify_init`: its dev server still serves, but files changed by anything other than the editor
 * (the app itself, `npm install`, a code generator) are never reloaded, and nothing says so.
 *
 * @param limits what {@link readInotifyLimits} read
 * @param slots previews the node holds at once (the agent's `NODE_SLOTS`)
 * @returns the limits to raise, empty when both suffice; `wanted` is the larger of the need and
 *   {@link RECOMMENDED_INOTIFY}, so the advice matches docs/deploy.md
 */
export function inotifyShortfall(limits: InotifyLimits, slots: number): InotifyShortfall[] {
  const out: InotifyShortfall[] = [];
  const instances = HOST_INSTANCES + slots * INOTIFY_INSTANCES_PER_PREVIEW;
  if (limits.maxUserInstances < instances)
    out.push({
      sysctl: 'fs.inotify.max_user_instances',
      current: limits.maxUserInstances,
      wanted: Math.max(instances, RECOMMENDED_INOTIFY.maxUserInstances),
    });
  const watches = slots * INOTIFY_WATCHES_PER_PREVIEW;
  if (limits.maxUserWatches < watches)
    out.push({
      sysctl: 'fs.inotify.max_user_watches',
      current: limits.maxUserWatches,
      wanted: Math.max(watches, RECOMMENDED_INOTIFY.maxUserWatches),
    });
  return out;
}

/** The commands that raise `short` now and at every boot (sysctl.d(5)). */
export function inotifyAdvice(short: readonly InotifyShortfall[]): string[] {
  const lines = short.map((s) => `${s.sysctl} = ${s.wanted}`);
  return [
    `raise now: \`sudo sysctl ${short.map((s) => `-w ${s.sysctl}=${s.wanted}`).join(' ')}\``,
    `and at boot: \`printf '${lines.join('\\n')}\\n' | sudo tee /etc/sysctl.d/90-preview.conf\` (docs/deploy.md, step 2)`,
  ];
}

/**
 * Logs a warning naming each limit too low for `slots` previews and how to raise it, once, at the
 * agent's start. A warning, not a refusal: a node with few previews runs fine on the defaults.
 *
 * @returns what {@link inotifyShortfall} found (empty when the limits suffice or cannot be read)
 */
export async function warnInotifyLimits(
  slots: number,
  log: { warn(obj: object, msg: string): void },
  dir?: string,
): Promise<InotifyShortfall[]> {
  const limits = await readInotifyLimits(dir);
  const short = limits ? inotifyShortfall(limits, slots) : [];
  if (short.length)
    log.warn(
      { inotify: short, slots, advice: inotifyAdvice(short) },
      `inotify limits too low for ${slots} previews (${short.map((s) => `${s.sysctl}=${s.current}, wants ${s.wanted}`).join('; ')}): previews past them do not see files changed outside the editor`,
    );
  return short;
}
