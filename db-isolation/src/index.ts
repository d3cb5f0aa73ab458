export {
  createDbIsolation,
  type DatabaseEndpoint,
  type DbIsolation,
  type DbIsolationLogger,
  type DbIsolationOptions,
  type DeployReport,
  type DeployTarget,
  type JanitorResult,
  type PrepareResult,
  type PreviewDatabase,
  type PreviewSchemaRecord,
  type SeedResult,
  type StaleReason,
  type StaleSchema,
} from './db-isolation.ts';
export { connectTarget, deploySchema, isTargetDatabaseUrl, MAX_DATABASE_URL_LENGTH } from './deploy.ts';
export { namesFor, type PreviewNames } from './names.ts';
export { isSupabaseDatabaseUrl, SUPABASE_ROLES } from './supabase.ts';
