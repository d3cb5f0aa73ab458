#!/usr/bin/env bash
# Builds the preview-base image from docker/preview-base/Dockerfile.
# Inputs: BASE_IMAGE (env, default node:20-slim), $1 = tag (default preview-base:dev).
# Changes: bundles the preview-daemon; installs each template's dependencies from its lockfile on
# this host (npm ci, into .build/context/templates, with the npm cache in .build/context/npm-cache;
# skipped while the lockfiles are unchanged); stages tini; builds the image from that context.
# Heavy templates (HEAVY_TEMPLATES: expo, ~350 MiB of dependencies) are staged apart, in
# .build/heavy/<name>, with an npm cache of their own that stays out of the image (the shared
# /npm-cache, overlaid into every preview's private cache, does not grow by their ~500 packages),
# and made into an image of their own (preview-heavy-templates:<hash of their inputs>, FROM scratch)
# only when they change: the main build copies from it, so they are neither sent with every build
# context nor copied again while unchanged.
# Skips the image build when an image with the same inputs hash already exists, so the test setup
# stays fast. Host and image must share OS and CPU architecture (native modules: rolldown, swc);
# the offline base image is made from this host's Node, and node:20-slim is linux/glibc too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=${1:-preview-base:dev}
base=${BASE_IMAGE:-node:20-slim}
ctx="$here/.build/context"
heavy="$here/.build/heavy"
mkdir -p "$ctx/daemon" "$ctx/templates" "$ctx/npm-cache" "$heavy"
rm -rf "$ctx/heavy" # staged here by earlier versions of this script
heavy_templates=" ${HEAVY_TEMPLATES:-expo} "

(cd "$repo" && npm run build --silent -w @preview/preview-daemon >/dev/null 2>&1) || {
  echo "preview-daemon build failed" >&2; (cd "$repo" && npm run build -w @preview/preview-daemon >&2); exit 1; }
rm -rf "$ctx/daemon" && mkdir -p "$ctx/daemon" && cp "$repo/docker/preview-daemon/dist/daemon.mjs" "$ctx/daemon/"

tini=$(command -v tini-static || command -v docker-init || true)
[ -n "$tini" ] || { echo "tini-static not found (Debian package tini)" >&2; exit 1; }
cmp -s "$tini" "$ctx/tini" 2>/dev/null || cp -L "$tini" "$ctx/tini"

# Templates: sources mirrored, dependencies installed once per lockfile.
for dir in "$repo"/templates/*/; do
  name=$(basename "$dir")
  dest="$ctx/templates/$name"
  cache="$ctx/npm-cache"
  if [[ "$heavy_templates" == *" $name "* ]]; then
    dest="$heavy/$name"
    cache="$here/.build/heavy-npm-cache"
    rm -rf "$ctx/templates/$name"
  else
    rm -rf "$heavy/$name"
  fi
  mkdir -p "$dest"
  stamp=$( { node -p 'process.version + process.arch + process.platform'; cat "$dir/package.json" "$dir/package-lock.json"; } | sha256sum | cut -c1-16)
  if [ "$(cat "$dest/node_modules/.preview-stamp" 2>/dev/null || true)" != "$stamp" ]; then
    echo "installing $name dependencies" >&2
    rm -rf "$dest/node_modules"
    cp "$dir/package.json" "$dir/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error --cache "$cache" >&2)
    # Also cache every installed package's metadata (packument), not only its tarball: a later
    # `npm install` in a preview (package.json edited) resolves from the cache without the network.
    specs=$(cd "$dest" && node -e '
      const fs = require("fs"); const lock = require("./package-lock.json");
      for (const [p, v] of Object.entries(lock.packages))
        if (p && !v.link && v.version && fs.existsSync(p)) console.log(`${p.split("node_modules/").pop()}@${v.version}`);')
    (cd "$dest" && echo "$specs" | xargs npm cache add --prefer-offline --loglevel=error --cache "$cache" >&2)
    echo "$stamp" >"$dest/node_modules/.preview-stamp"
  fi
  # Sources: everything but node_modules, mirrored (deleted files go too).
  (cd "$dest" && find . -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} +)
  (cd "$dir" && tar -c --exclude=./node_modules --exclude=./.next --exclude=./dist --exclude=./.expo .) | tar -x -C "$dest"
done
rm -rf "$ctx/npm-cache/_logs" "$ctx/npm-cache/_update-notifier-last-checked"
for dir in "$heavy"/*/; do [ -d "$dir" ] && [ ! -d "$repo/templates/$(basename "$dir")" ] && rm -rf "$dir"; done

heavy_hash=$( { cat "$here/heavy.Dockerfile"; cat "$heavy"/*/node_modules/.preview-stamp 2>/dev/null;
  (cd "$heavy" && find . -path '*/node_modules' -prune -o -type f -print | sort | xargs -r cat); } | sha256sum | cut -c1-16)
heavy_image="preview-heavy-templates:$heavy_hash"
if ! docker image inspect "$heavy_image" >/dev/null 2>&1; then
  echo "building $heavy_image" >&2
  docker build -q -f "$here/heavy.Dockerfile" -t "$heavy_image" "$heavy" >/dev/null 2>&1 ||
    { docker build -f "$here/heavy.Dockerfile" -t "$heavy_image" "$heavy" >&2; exit 1; }
fi

inputs=$( { echo "$base"; docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || true;
  cat "$here/Dockerfile" "$ctx/tini" "$ctx/daemon/daemon.mjs";
  cat "$ctx"/templates/*/node_modules/.preview-stamp; echo "$heavy_image";
  (cd "$ctx/templates" && find . -path '*/node_modules' -prune -o -type f -print | sort | xargs cat); } | sha256sum | cut -c1-16)
if [ "$(docker image inspect --format '{{index .Config.Labels "preview.inputs"}}' "$tag" 2>/dev/null || true)" = "$inputs" ]; then
  echo "$tag (up to date)"
  exit 0
fi
docker build -q --build-arg BASE_IMAGE="$base" --build-arg HEAVY_IMAGE="$heavy_image" --label preview.inputs="$inputs" \
  -f "$here/Dockerfile" -t "$tag" "$ctx" >/dev/null 2>&1 || { docker build --build-arg BASE_IMAGE="$base" --build-arg HEAVY_IMAGE="$heavy_image" -f "$here/Dockerfile" -t "$tag" "$ctx" >&2; exit 1; }
echo "$tag"
