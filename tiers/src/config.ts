import type { z } from 'zod';
import { ConfigError } from './errors.ts';

/**
 * Builds a service's `loadConfig(env)`: one zod object schema over environment variables, parsed once
 * in `main.ts` and passed down. Errors name every bad variable and its rule.
 *
 * @example
 * const loadConfig = defineConfig(z.object({ PORT: z.coerce.number().int().default(8080) }));
 * const config = loadConfig(process.env);
 */
export function defineConfig<S extends z.ZodType>(schema: S) {
  return (env: Record<string, string | undefined>): z.output<S> => {
    // Empty strings mean "unset" for environment variables.
    const cleaned: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v;
    const parsed = schema.safeParse(cleaned);
    if (!parsed.success) {
      const lines = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new ConfigError('invalid_config', `invalid configuration: ${lines.join('; ')}`);
    }
    return parsed.data;
  };
}
