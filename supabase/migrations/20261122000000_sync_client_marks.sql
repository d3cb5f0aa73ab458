-- Per editor client: the highest of its batches whose edits are committed to project_files.
-- Written in the same transaction as the edits, so a sync owner that takes over after another died
-- knows exactly which replayed batches are already in project_files (the Redis watermark can lag a
-- COMMIT by the time it takes to write it).
CREATE TABLE sync_client_marks (
  preview_id     uuid NOT NULL REFERENCES preview_sessions (id) ON DELETE CASCADE,
  client_id      text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 128),
  persisted_seq  bigint NOT NULL CHECK (persisted_seq >= 0),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (preview_id, client_id)
);

-- Only the router (table owner / service role) reads or writes it; no user policy.
ALTER TABLE sync_client_marks ENABLE ROW LEVEL SECURITY;
