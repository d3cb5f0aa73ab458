import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/**
 * A PostgreSQL SCRAM-SHA-256 verifier for `password` (RFC 5802/7677, PostgreSQL's
 * `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` form). Sending the verifier instead of the
 * password keeps the plain password out of server logs and `pg_stat_statements`.
 *
 * @example
 * await scramVerifier('secret'); // 'SCRAM-SHA-256$4096:...$...:...'
 */
export async function scramVerifier(password: string, iterations = 4096): Promise<string> {
  const salt = randomBytes(16);
  const salted = await pbkdf2Async(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
