import type { z } from 'zod';
import { InvalidInputError } from './errors.ts';
import { batchIssueCode, issueRule } from './wire.ts';

/**
 * A zod failure as one `InvalidInputError` naming each field and its rule (at most five issues):
 * `body.files.a: must be relative (rule relative_path)`. The one zod-error helper of the project,
 * used by the router's and the pool agent's HTTP edges.
 *
 * @param options.where the name the field paths start with. @default 'body'
 * @param options.code the error's wire code. @default the code the sync socket uses for a bad file
 *   path or size in a batch (`invalid_path`, `too_large`), else `invalid_request`
 * @example
 * const r = Schema.safeParse(body);
 * if (!r.success) throw zodToInvalidInput(r.error, { where: 'body', code: 'invalid_body' });
 */
export function zodToInvalidInput(
  error: z.ZodError,
  options: { where?: string; code?: string } = {},
): InvalidInputError {
  const where = options.where ?? 'body';
  const parts = error.issues.slice(0, 5).map((i) => {
    const field = [where, ...i.path.map(String)].join('.');
    const rule = issueRule(i) ?? i.code;
    return `${field}: ${i.message} (rule ${rule})`;
  });
  return new InvalidInputError(
    options.code ?? batchIssueCode(error.issues, 'invalid_request'),
    parts.join('; '),
  );
}
