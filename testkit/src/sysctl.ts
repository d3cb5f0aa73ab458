import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A folder shaped like `/proc/sys/fs/inotify` holding the given limits, for code that reads the
 * kernel's inotify sysctls from a directory it is given. `remove()` deletes it.
 */
export async function inotifySysctlDir(
  maxUserInstances: number | string,
  maxUserWatches: number | string,
): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'inotify-sysctl-'));
  await writeFile(join(dir, 'max_user_instances'), `${maxUserInstances}\n`);
  await writeFile(join(dir, 'max_user_watches'), `${maxUserWatches}\n`);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
