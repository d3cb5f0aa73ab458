import { InvalidInputError } from '@preview/tiers';
import { z } from 'zod';

const previewIdSchema = z.uuid();
const targetSchemaSchema = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier: [a-z_][a-z0-9_]{0,62}')
  .refine((s) => !s.startsWith('pg_'), 'must not start with pg_ (reserved by PostgreSQL)');

/** The names derived from one preview id. Only ever built from a validated uuid, so no quoting is needed. */
export interface PreviewNames {
  previewId: string;
  hex: string;
  schema: string;
  role: string;
}

/**
 * Validates `previewId` as a uuid and derives `preview_<32 hex>` / `p_<32 hex>` from it.
 * Throws `InvalidInputError` (code `invalid_preview_id`) naming the field otherwise.
 *
 * @example
 * namesFor('6f1c...').schema; // 'preview_6f1c...'
 */
export function namesFor(previewId: unknown, field = 'previewId'): PreviewNames {
  const parsed = previewIdSchema.safeParse(previewId);
  if (!parsed.success)
    throw new InvalidInputError(
      'invalid_preview_id',
      `${field}: must be a uuid (got ${describe(previewId)})`,
    );
  const id = parsed.data.toLowerCase();
  const hex = id.replaceAll('-', '');
  return { previewId: id, hex, schema: `preview_${hex}`, role: `p_${hex}` };
}

/** Back from the 32 hex digits of a schema or role name to the uuid. */
export function previewIdFromHex(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Validates the schema an export or deploy writes into: a lowercase SQL identifier, not `pg_*`.
 * Throws `InvalidInputError` `invalid_target_schema` naming `field` (default `targetSchema`).
 */
export function validTargetSchema(value: unknown, field = 'targetSchema'): string {
  const parsed = targetSchemaSchema.safeParse(value);
  if (!parsed.success)
    throw new InvalidInputError(
      'invalid_target_schema',
      `${field}: ${parsed.error.issues[0]?.message ?? 'invalid'} (got ${describe(value)})`,
    );
  return parsed.data;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  return v === null ? 'null' : typeof v;
}

/** Double-quotes an identifier for SQL text (for names read from the catalog, not from callers). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Single-quotes a literal for SQL text. */
export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
