#!/usr/bin/env bash
# Builds the preview-base image from docker/preview-base/Dockerfile.
# Inputs: BASE_IMAGE (env, default node:20-slim), $1 = tag (default preview-base:dev).
# Changes: bundles the preview-daemon, stages tini, builds the image. Skips the build when an
# image with the same inputs hash already exists, so the test setup stays fast.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=${1:-preview-base:dev}
base=${BASE_IMAGE:-node:20-slim}

(cd "$repo" && npm run build --silent -w @preview/preview-daemon >/dev/null 2>&1)
mkdir -p "$here/.build"
tini=$(command -v tini-static || command -v docker-init || true)
[ -n "$tini" ] || { echo "tini-static not found (Debian package tini)" >&2; exit 1; }
cp -L "$tini" "$here/.build/tini"

inputs=$( { echo "$base"; docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || true;
  cat "$here/Dockerfile" "$here/.build/tini";
  find "$repo/docker/preview-daemon/dist" "$repo/templates" -type f -not -path '*/node_modules/*' 2>/dev/null | sort | xargs cat 2>/dev/null; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect --format '{{index .Config.Labels "preview.inputs"}}' "$tag" 2>/dev/null || true)" = "$inputs" ]; then
  echo "$tag (up to date)"
  exit 0
fi
docker build -q --build-arg BASE_IMAGE="$base" --label preview.inputs="$inputs" \
  -f "$here/Dockerfile" -t "$tag" "$repo" >/dev/null 2>&1 || { docker build --build-arg BASE_IMAGE="$base" -f "$here/Dockerfile" -t "$tag" "$repo" >&2; exit 1; }
echo "$tag"
