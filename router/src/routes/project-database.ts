import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { type AuthEnv, requireUser } from '../auth/middleware.ts';
import type { ProjectDatabaseService } from '../project-database.ts';
import {
  DeployDatabaseBody,
  DeployReportBody,
  ErrorBody,
  ProjectIdParams,
  SeedDatabaseBody,
  SeedResultBody,
} from '../schemas.ts';
import { createRouteGroup, errorResponses as errors, secured } from './route-group.ts';

/**
 * A project's database under `/v1/projects/{projectId}/database`: `deploy` (copy it with its rows
 * into another database) and `seed` (run SQL in it as the preview's role). Only the project's owner:
 * another user's project is a 404, like one that does not exist.
 */
export function projectDatabaseRoutes({
  projectDatabases,
}: {
  projectDatabases: ProjectDatabaseService;
}): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/projects/{projectId}/database/deploy',
      summary: 'Deploy the project’s database with its rows into another PostgreSQL database (owner only)',
      description:
        'One transaction on the target; row counts and sequence values are checked against the preview before it commits. Any failure leaves the target unchanged.',
      security: secured,
      request: {
        params: ProjectIdParams,
        body: { content: { 'application/json': { schema: DeployDatabaseBody } }, required: true },
      },
      responses: {
        ...errors,
        200: {
          description: 'What was deployed',
          content: { 'application/json': { schema: DeployReportBody } },
        },
        409: {
          description:
            'The target has tables (views, sequences, types) of the same names and `replace` is false (`target_conflict`, naming them), or `dropPreviewSchema` with a live preview (`preview_live`)',
          content: { 'application/json': { schema: ErrorBody } },
        },
        502: {
          description:
            'A statement or check failed on the target (`deploy_failed`, naming it); the target is unchanged',
          content: { 'application/json': { schema: ErrorBody } },
        },
        503: {
          description: 'The target cannot be reached (`target_unreachable`)',
          content: { 'application/json': { schema: ErrorBody } },
        },
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const report = await projectDatabases.deploy(
        user.userId,
        c.req.valid('param').projectId,
        c.req.valid('json'),
      );
      return c.json(report, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/projects/{projectId}/database/seed',
      summary:
        'Seed the project’s database (owner only): the SQL sent, else the project’s seed file or package.json scripts.seed',
      description:
        'With `sql`: run in one transaction as the preview’s role. Without (or `script: true`): the project’s `supabase/seed.sql` or `seed.sql` from its stored files the same way, else package.json `scripts.seed` run in its running preview’s sandbox with the preview’s DATABASE_URL (404 `no_seed` when it has none of these; 409 `preview_not_live` when the script needs a preview and none runs).',
      security: secured,
      request: {
        params: ProjectIdParams,
        body: { content: { 'application/json': { schema: SeedDatabaseBody } }, required: true },
      },
      responses: {
        200: { description: 'Committed', content: { 'application/json': { schema: SeedResultBody } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const r = await projectDatabases.seed(user.userId, c.req.valid('param').projectId, {
        sql: c.req.valid('json').sql,
      });
      return c.json(r, 200);
    },
  );
  return app;
}
