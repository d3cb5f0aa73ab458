-- Router lookups that the first migration did not index, and the node credential nonce.
-- Inputs: the tables of 20261121000000_router_tables.sql.
-- Changes: an index to find a node by its credential hash (node auth on every heartbeat), one to
-- list a user's sessions of any state newest first, and one for the API key hash lookup is
-- already the UNIQUE constraint. Adds preview_nodes.credential_nonce: node credentials are an HMAC of
-- (node name, nonce) under the router's secret, so every replica can call an agent with its
-- credential while the table stores only its sha256. Idempotent (IF NOT EXISTS).
ALTER TABLE preview_nodes ADD COLUMN IF NOT EXISTS credential_nonce text;
CREATE UNIQUE INDEX IF NOT EXISTS preview_nodes_credential ON preview_nodes (credential_hash);
CREATE INDEX IF NOT EXISTS preview_sessions_user_all ON preview_sessions (user_id, created_at DESC, id DESC);
