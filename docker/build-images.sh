#!/usr/bin/env bash
# Builds the three images of a deployment, tagged with one version taken from git:
#   <prefix>router:<version>      docker/router/Dockerfile      (context: the repo root)
#   <prefix>pool-agent:<version>  docker/pool-agent/Dockerfile  (context: the repo root)
#   <prefix>base:<version>        docker/preview-base           (the preview sandbox image)
# Inputs (environment):
#   BASE_IMAGE    Node 20 image all three build on (default node:20-slim). `--offline` instead uses
#                 preview-node-base:<host node version>, made by docker/offline-base/build.sh when missing.
#   IMAGE_PREFIX  e.g. ghcr.io/acme/preview- (default preview-)
#   VERSION       the tag (default: `git describe --tags --always --dirty`, made tag-safe)
#   PUSH=1        push the three tags after building (a logged-in registry)
# Changes: builds (and with PUSH=1 pushes) the images; prints the three references, one a line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
offline=0
for arg in "$@"; do
  case $arg in
    --offline) offline=1 ;;
    *) echo "usage: $0 [--offline]" >&2; exit 2 ;;
  esac
done
if [ "$offline" = 1 ] && [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE="preview-node-base:$(node -p 'process.versions.node')"
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || bash "$repo/docker/offline-base/build.sh" "$BASE_IMAGE" >/dev/null
fi
base=${BASE_IMAGE:-node:20-slim}
prefix=${IMAGE_PREFIX:-preview-}
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
version=${VERSION:-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)}
version=$(printf '%s' "$version" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-128)

build() { # <dockerfile> <image>
  local log
  log=$(mktemp)
  if ! docker build -f "$repo/$1" --build-arg BASE_IMAGE="$base" \
      --label org.opencontainers.image.version="$version" \
      --label org.opencontainers.image.revision="$revision" \
      -t "$2" "$repo" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "build of $2 failed" >&2; exit 1
  fi
  rm -f "$log"
}
router="${prefix}router:${version}"
agent="${prefix}pool-agent:${version}"
sandbox="${prefix}base:${version}"
build docker/router/Dockerfile "$router"
build docker/pool-agent/Dockerfile "$agent"
BASE_IMAGE="$base" bash "$repo/docker/preview-base/build.sh" "$sandbox" >/dev/null
if [ "${PUSH:-0}" = 1 ]; then
  for image in "$router" "$agent" "$sandbox"; do docker push -q "$image" >/dev/null; done
fi
printf '%s\n' "$router" "$agent" "$sandbox"
