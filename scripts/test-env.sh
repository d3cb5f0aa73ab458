#!/usr/bin/env bash
# Brings up what the tests need, idempotently, and fast when everything is already up:
# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (started with Debian's binaries when
# installed but stopped), the Docker engine (Debian's docker.io, installed and started when missing)
# with Debian's docker-compose (v1; Debian 12 packages no compose v2 plugin), the offline Node base
# image and the preview-base image built on it, Debian's chromium and bubblewrap, and inotify limits
# high enough for many dev servers. Inputs: none. Changes: installs packages, starts daemons, raises
# sysctls, builds images.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[test-env] %s\n' "$*"; }
updated=0
apt_install() {
  if [ "$updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- PostgreSQL ---
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
fi

# --- Redis ---
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { log "Redis is not reachable on 127.0.0.1:6379"; exit 1; }
fi

# --- packages: Docker engine, compose, tini, Chromium, bubblewrap ---
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v tini-static >/dev/null || missing+=(tini)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Compose for docker/compose.yml: Debian 12 has no compose v2 plugin package, so its `docker-compose`
# (v1.29, Python). docker/cluster.sh uses `docker compose` instead wherever the plugin exists.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v bwrap >/dev/null || missing+=(bubblewrap)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# --- dockerd ---
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log; exit 1; }
fi

# --- kernel limits ---
# Every dev server (the previews' Vite in containers, the fake WebContainer's, the editor's) holds an
# inotify instance, and the kernel's default of 128 per uid runs out in a full test run: a watcher
# that gets EMFILE never sees a change, and its server serves the old file. The values
# docs/deploy.md sets on every node; raised only where lower, and only where this user may.
raise_sysctl() {
  local f="/proc/sys/$1" want="$2" have
  have=$(cat "$f" 2>/dev/null) || return 0
  [ "$have" -ge "$want" ] && return 0
  if echo "$want" >"$f" 2>/dev/null; then log "${1//\//.}: $have -> $want"
  else log "${1//\//.} is $have (< $want) and cannot be raised here: file watchers may fail under load"; fi
}
raise_sysctl fs/inotify/max_user_instances 8192
raise_sysctl fs/inotify/max_user_watches 1048576

# --- images ---
node_version=$(node -p 'process.versions.node')
base="preview-node-base:${node_version}"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  log "building offline base image $base"
  bash "$repo/docker/offline-base/build.sh" "$base" >/dev/null
fi
log "preview-base: $(BASE_IMAGE="$base" bash "$repo/docker/preview-base/build.sh" "${PREVIEW_IMAGE:-preview-base:dev}")"
log "ready"
