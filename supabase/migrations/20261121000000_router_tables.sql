-- Router tables: sessions, nodes, project files, events, per-preview schemas, API keys.
-- Inputs: none (applied by the router's migration runner at start, or by `supabase db push`).
-- Changes: creates the tables below, their indexes, and row-level security so that a user
-- (role `authenticated`, identified by auth.uid()) sees only rows whose user_id is theirs.
-- On plain Postgres (no Supabase) it first creates the `anon`/`authenticated` roles and an
-- `auth.uid()` that reads the same `request.jwt.claims` setting Supabase's does.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN;
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'uid'
  ) THEN
    EXECUTE $f$
      CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $body$
        SELECT nullif(
          coalesce(
            current_setting('request.jwt.claim.sub', true),
            (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
          ), ''
        )::uuid
      $body$
    $f$;
  END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated;

CREATE TABLE preview_nodes (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name             text NOT NULL UNIQUE,
  url              text NOT NULL,
  runtime          text NOT NULL CHECK (runtime IN ('docker', 'process')),
  credential_hash  text NOT NULL,
  capacity         jsonb NOT NULL DEFAULT '{}'::jsonb,
  state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'dead')),
  last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE preview_sessions (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id          uuid NOT NULL,
  template         text NOT NULL,
  state            text NOT NULL DEFAULT 'queued' CHECK (state IN
                     ('queued', 'provisioning', 'starting', 'ready', 'suspended', 'migrating', 'stopping', 'ended', 'failed')),
  tier             text CHECK (tier IN ('browser', 'docker', 'fly')),
  placement        jsonb,
  node_id          uuid REFERENCES preview_nodes (id) ON DELETE SET NULL,
  classification   jsonb NOT NULL DEFAULT '{}'::jsonb,
  reasons          jsonb NOT NULL DEFAULT '[]'::jsonb,
  idempotency_key  text,
  needs_database   boolean NOT NULL DEFAULT false,
  last_seq         bigint NOT NULL DEFAULT 0,
  error            text,
  last_edit_at     timestamptz NOT NULL DEFAULT now(),
  last_view_at     timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  ended_at         timestamptz
);

CREATE UNIQUE INDEX preview_sessions_idempotency ON preview_sessions (user_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX preview_sessions_user_live ON preview_sessions (user_id, created_at DESC)
  WHERE state NOT IN ('ended', 'failed');
CREATE INDEX preview_sessions_node ON preview_sessions (node_id) WHERE node_id IS NOT NULL;
CREATE INDEX preview_sessions_activity ON preview_sessions (state, greatest(last_edit_at, last_view_at));

CREATE TABLE project_files (
  preview_id    uuid NOT NULL REFERENCES preview_sessions (id) ON DELETE CASCADE,
  path          text NOT NULL CHECK (length(path) BETWEEN 1 AND 512),
  content       bytea NOT NULL,
  content_hash  text NOT NULL,
  size          integer NOT NULL,
  seq           bigint NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (preview_id, path)
);

CREATE TABLE preview_events (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  preview_id  uuid NOT NULL REFERENCES preview_sessions (id) ON DELETE CASCADE,
  kind        text NOT NULL,
  data        jsonb NOT NULL DEFAULT '{}'::jsonb,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX preview_events_preview ON preview_events (preview_id, id DESC);

CREATE TABLE preview_schemas (
  preview_id   uuid PRIMARY KEY,
  schema_name  text NOT NULL UNIQUE CHECK (schema_name ~ '^preview_[0-9a-f]{32}$'),
  role_name    text NOT NULL UNIQUE CHECK (role_name ~ '^p_[0-9a-f]{32}$'),
  state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'dropping', 'dropped')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  dropped_at   timestamptz
);

CREATE TABLE api_keys (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL,
  name        text NOT NULL,
  key_hash    text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

-- Row-level security: the router connects as the table owner; users reach these tables through
-- Supabase's PostgREST/Realtime as `authenticated`, and see only their own rows.
ALTER TABLE preview_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE project_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE preview_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE preview_schemas ENABLE ROW LEVEL SECURITY;
ALTER TABLE preview_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;

GRANT SELECT ON preview_sessions, project_files, preview_events, preview_schemas TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON project_files TO authenticated;
GRANT SELECT (id, user_id, name, created_at, revoked_at) ON api_keys TO authenticated;

CREATE POLICY sessions_owner ON preview_sessions FOR SELECT TO authenticated
  USING (user_id = auth.uid());
CREATE POLICY files_owner ON project_files FOR ALL TO authenticated
  USING (EXISTS (SELECT 1 FROM preview_sessions s WHERE s.id = preview_id AND s.user_id = auth.uid()))
  WITH CHECK (EXISTS (SELECT 1 FROM preview_sessions s WHERE s.id = preview_id AND s.user_id = auth.uid()));
CREATE POLICY events_owner ON preview_events FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM preview_sessions s WHERE s.id = preview_id AND s.user_id = auth.uid()));
CREATE POLICY schemas_owner ON preview_schemas FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM preview_sessions s WHERE s.id = preview_id AND s.user_id = auth.uid()));
CREATE POLICY api_keys_owner ON api_keys FOR SELECT TO authenticated
  USING (user_id = auth.uid());
-- preview_nodes has no policy: no user row is visible.
