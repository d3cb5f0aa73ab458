-- Project identity (issue 16): a preview per app. One live preview per (user, project), a database
-- schema that belongs to the project and outlives its previews, and the last use that retention reads.
-- Inputs: preview_sessions and preview_schemas (20261121000000_router_tables.sql).
-- Changes:
-- * preview_projects (user_id, project_id): the editor's app id per user, `database_id` (the uuid
--   db-isolation names the project's schema and role after: preview_<hex> / p_<hex>) and
--   `last_used_at` (moved by every open of the project).
-- * preview_sessions.project_id (NULL: a preview outside any project) and
--   preview_sessions.database_id (the database the preview uses; NULL: its own, named after its id),
--   with a foreign key to the project: deleting a project (retention) deletes its sessions and, by
--   their own ON DELETE CASCADE, their files, events and sync marks.
-- * preview_sessions_project_live: at most one live session per (user, project), across replicas.
-- * Row-level security: a user sees their own projects and the schema rows of their projects.

CREATE TABLE preview_projects (
  user_id       uuid NOT NULL,
  project_id    text NOT NULL CHECK (project_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  database_id   uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  last_used_at  timestamptz NOT NULL DEFAULT now(),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, project_id)
);
CREATE INDEX preview_projects_last_used ON preview_projects (last_used_at);

ALTER TABLE preview_sessions ADD COLUMN project_id text;
ALTER TABLE preview_sessions ADD COLUMN database_id uuid;
ALTER TABLE preview_sessions ADD CONSTRAINT preview_sessions_project_fk
  FOREIGN KEY (user_id, project_id) REFERENCES preview_projects (user_id, project_id) ON DELETE CASCADE;

-- The live states are LIVE_STATES of @preview/tiers (session.ts).
CREATE UNIQUE INDEX preview_sessions_project_live ON preview_sessions (user_id, project_id)
  WHERE project_id IS NOT NULL
    AND state IN ('queued', 'provisioning', 'starting', 'ready', 'suspended', 'migrating');
CREATE INDEX preview_sessions_project ON preview_sessions (user_id, project_id, created_at DESC)
  WHERE project_id IS NOT NULL;

ALTER TABLE preview_projects ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON preview_projects TO authenticated;
CREATE POLICY projects_owner ON preview_projects FOR SELECT TO authenticated
  USING (user_id = auth.uid());
CREATE POLICY schemas_project_owner ON preview_schemas FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM preview_projects p WHERE p.database_id = preview_id AND p.user_id = auth.uid()));
