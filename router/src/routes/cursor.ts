import { z } from '@hono/zod-openapi';
import { zodToInvalidInput } from '@preview/tiers';

/** A list position: the last row's creation time and id (the list is newest first). */
export interface ListCursor {
  createdAt: Date;
  id: string;
}

/** The opaque `nextCursor` of `GET /v1/previews`: base64url of `<ISO createdAt>|<id>`. */
export function encodeCursor(row: ListCursor): string {
  return Buffer.from(`${row.createdAt.toISOString()}|${row.id}`).toString('base64url');
}

/**
 * Reads a cursor made by {@link encodeCursor}.
 * @throws InvalidInputError (query `cursor`) when it is not one: a bad date or an id that is not a UUID.
 */
export function decodeCursor(cursor: string): ListCursor {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const createdAt = new Date(at ?? '');
  if (Number.isNaN(createdAt.getTime()) || !id || !/^[0-9a-f-]{36}$/.test(id))
    throw zodToInvalidInput(
      new z.ZodError([
        { code: 'custom', path: ['cursor'], message: 'not a cursor from this API', input: cursor },
      ]),
      { where: 'query' },
    );
  return { createdAt, id };
}
