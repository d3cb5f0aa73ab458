import { createHash, randomBytes } from 'node:crypto';

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A new opaque credential with a recognisable prefix (`pk_` service key, `pn_` node credential). */
export const newCredential = (prefix: 'pk_' | 'pn_'): string =>
  `${prefix}${randomBytes(24).toString('base64url')}`;
