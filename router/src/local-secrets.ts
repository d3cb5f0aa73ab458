import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface LocalSecrets {
  jwtSecret: string;
  previewTokenSecret: string;
  joinToken: string;
  localUserId: string;
}

/**
 * Embedded mode's secrets, generated on first start and kept (mode 0600) under DATA_DIR so the
 * printed local token keeps working across restarts.
 */
export async function loadLocalSecrets(file: string): Promise<LocalSecrets> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LocalSecrets;
  } catch {
    const s: LocalSecrets = {
      jwtSecret: randomBytes(32).toString('base64url'),
      previewTokenSecret: randomBytes(32).toString('base64url'),
      joinToken: randomBytes(24).toString('base64url'),
      localUserId: randomUUID(),
    };
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(s), { mode: 0o600 });
    return s;
  }
}
