import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scramVerifier } from './scram.ts';

// node-postgres' own SCRAM client, an independent implementation of the exchange a preview's driver
// will run against PostgreSQL (the machine's server uses trust auth, so it cannot check passwords).
interface SaslSession {
  response: string;
  clientNonce: string;
}
const require = createRequire(import.meta.url);
const sasl = require(join(dirname(require.resolve('pg/package.json')), 'lib', 'crypto', 'sasl.js')) as {
  startSession(mechanisms: string[], stream?: unknown): SaslSession;
  continueSession(session: SaslSession, password: string, serverData: string): Promise<void>;
  finalizeSession(session: SaslSession, serverData: string): void;
};

/** Plays PostgreSQL's side of SCRAM-SHA-256 with a stored verifier; true when the client's proof checks. */
async function login(verifier: string, password: string): Promise<boolean> {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (!m) throw new Error(`not a verifier: ${verifier}`);
  const [, iter, salt, storedKeyB64, serverKeyB64] = m;
  const storedKey = Buffer.from(storedKeyB64!, 'base64');
  const serverKey = Buffer.from(serverKeyB64!, 'base64');
  const session = sasl.startSession(['SCRAM-SHA-256']);
  const clientFirstBare = session.response.slice(3); // drop the gs2 header 'n,,'
  const nonce = session.clientNonce + randomBytes(18).toString('base64');
  const serverFirst = `r=${nonce},s=${salt},i=${iter}`;
  await sasl.continueSession(session, password, serverFirst);
  const clientFinal = session.response;
  const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
  const proof = Buffer.from(clientFinal.slice(clientFinal.lastIndexOf(',p=') + 3), 'base64');
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  const clientSignature = createHmac('sha256', storedKey).update(authMessage).digest();
  const clientKey = Buffer.from(proof.map((b, i) => b ^ clientSignature[i]!));
  const ok = timingSafeEqual(createHash('sha256').update(clientKey).digest(), storedKey);
  if (ok) {
    const serverSignature = createHmac('sha256', serverKey).update(authMessage).digest('base64');
    sasl.finalizeSession(session, `v=${serverSignature}`); // throws if our ServerKey is wrong
  }
  return ok;
}

describe('scramVerifier', () => {
  it('produces a verifier a standard SCRAM client authenticates against with the password only', async () => {
    const password = randomBytes(24).toString('base64url');
    const verifier = await scramVerifier(password);
    expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(await login(verifier, password)).toBe(true);
    expect(await login(verifier, `${password}x`)).toBe(false);
  });

  it('honours the iteration count', async () => {
    const verifier = await scramVerifier('pw', 256);
    expect(verifier).toMatch(/^SCRAM-SHA-256\$256:/);
    expect(await login(verifier, 'pw')).toBe(true);
  });

  it('salts every verifier differently', async () => {
    expect(await scramVerifier('same')).not.toBe(await scramVerifier('same'));
  });
});
