-- The body an Idempotency-Key was first used with, so that a reuse with another body is refused.
-- Inputs: preview_sessions (20261121000000_router_tables.sql).
-- Changes: adds preview_sessions.idempotency_body_hash, the lowercase hex SHA-256 of the validated
-- create body (set with idempotency_key; NULL for sessions created before this migration, which
-- keep answering a repeated key with the first preview).
ALTER TABLE preview_sessions ADD COLUMN idempotency_body_hash text
  CHECK (idempotency_body_hash IS NULL OR idempotency_body_hash ~ '^[0-9a-f]{64}$');
