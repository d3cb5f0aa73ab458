-- Realtime Authorization for the editors' sync channels (issue 11).
-- Inputs: preview_sessions (20261121000000_router_tables.sql); on Supabase, the `realtime.messages`
-- table and `realtime.topic()` that Supabase Realtime creates in every project.
-- Changes: RLS policies on realtime.messages so that on a private channel `preview:<id>` only the
-- owner of that live preview (auth.uid() = preview_sessions.user_id) may join and receive (SELECT)
-- and broadcast (INSERT), for the `broadcast` extension only. Everyone else (another user, `anon`)
-- is refused at join. Supabase Realtime evaluates these policies when a client joins a channel with
-- `config: { private: true }`: it inserts and selects a row of realtime.messages as the joining
-- user's role with `request.jwt.claims` and `realtime.topic` set, then rolls back
-- (https://supabase.com/docs/guides/realtime/authorization). The service role bypasses RLS, so the
-- router's bridge (service key) joins without a policy.
-- On plain Postgres (no Supabase) it first creates a `realtime` schema, a `realtime.messages` table
-- with Supabase's columns and a `realtime.topic()` reading the same `realtime.topic` setting, so the
-- policies exist everywhere the router's tables do and the in-repo Realtime server can evaluate them.

CREATE SCHEMA IF NOT EXISTS realtime;

DO $$
BEGIN
  IF to_regclass('realtime.messages') IS NULL THEN
    CREATE TABLE realtime.messages (
      id           uuid NOT NULL DEFAULT gen_random_uuid(),
      topic        text NOT NULL,
      extension    text NOT NULL,
      payload      jsonb,
      event        text,
      private      boolean DEFAULT false,
      updated_at   timestamp without time zone NOT NULL DEFAULT now(),
      inserted_at  timestamp without time zone NOT NULL DEFAULT now(),
      PRIMARY KEY (id, inserted_at)
    );
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'realtime' AND p.proname = 'topic'
  ) THEN
    EXECUTE $f$
      CREATE FUNCTION realtime.topic() RETURNS text LANGUAGE sql STABLE AS $body$
        SELECT nullif(current_setting('realtime.topic', true), '')::text
      $body$
    $f$;
  END IF;
END
$$;

ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
GRANT USAGE ON SCHEMA realtime TO anon, authenticated;
GRANT SELECT, INSERT ON realtime.messages TO anon, authenticated;
GRANT EXECUTE ON FUNCTION realtime.topic() TO anon, authenticated;

-- The preview id is the topic after `preview:`; the owner is read through preview_sessions' own RLS
-- policy (sessions_owner), so the check is the same one PostgREST applies to that row.
CREATE POLICY preview_owner_receives ON realtime.messages FOR SELECT TO authenticated
  USING (
    realtime.messages.extension = 'broadcast'
    AND EXISTS (
      SELECT 1 FROM public.preview_sessions s
      WHERE 'preview:' || s.id::text = (SELECT realtime.topic())
        AND s.user_id = (SELECT auth.uid())
        AND s.state NOT IN ('ended', 'failed')
    )
  );

CREATE POLICY preview_owner_broadcasts ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (
    realtime.messages.extension = 'broadcast'
    AND EXISTS (
      SELECT 1 FROM public.preview_sessions s
      WHERE 'preview:' || s.id::text = (SELECT realtime.topic())
        AND s.user_id = (SELECT auth.uid())
        AND s.state NOT IN ('ended', 'failed')
    )
  );
