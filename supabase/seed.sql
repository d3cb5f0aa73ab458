-- Seed for a local Supabase stack: nothing user-specific; the router creates rows at run time.
-- Inputs: none. Changes: none beyond a comment row-free check that migrations ran.
SELECT 1 FROM preview_sessions LIMIT 0;
