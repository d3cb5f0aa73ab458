export {
  createDbIsolation,
  type DatabaseEndpoint,
  type DbIsolation,
  type DbIsolationLogger,
  type DbIsolationOptions,
  type JanitorResult,
  type PrepareResult,
  type PreviewDatabase,
  type PreviewSchemaRecord,
  type StaleReason,
  type StaleSchema,
} from './db-isolation.ts';
export { namesFor, type PreviewNames } from './names.ts';
export { isSupabaseDatabaseUrl, SUPABASE_ROLES } from './supabase.ts';
