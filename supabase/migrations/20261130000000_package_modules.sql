-- The bundler's package cache, shared by router replicas (issue 13).
-- Inputs: none (the router's own table).
-- Changes:
-- * package_modules (name, version, subpath): a package's module bundled as browser ESM by a router,
--   exactly as `/__pkg/<name>@<version>/<subpath>` serves it. Immutable once written (a published
--   npm version never changes), so replicas read each other's bundles instead of fetching and
--   bundling again. Each replica keeps its disk copy as a cache in front of this table.
-- * Row-level security on, with no policy: only the router's own role (the table owner) reads it.

CREATE TABLE package_modules (
  name        text NOT NULL,
  version     text NOT NULL,
  subpath     text NOT NULL,
  code        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version, subpath)
);
ALTER TABLE package_modules ENABLE ROW LEVEL SECURITY;
