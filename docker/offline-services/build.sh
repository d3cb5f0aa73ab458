#!/usr/bin/env bash
# Builds offline stand-ins for the official postgres, redis and caddy images (docker/compose.yml's
# POSTGRES_IMAGE, REDIS_IMAGE, LB_IMAGE) from Debian's packages: PostgreSQL and Redis as installed on
# this host (the test machine has both), Caddy from its Debian package (`apt-get download`, unpacked,
# not installed). Each binary is staged with its shared libraries and built on BASE_IMAGE.
# Inputs: BASE_IMAGE (default preview-node-base:<host node version>), $1 = tag (default offline).
# Changes: builds preview-postgres:<tag>, preview-redis:<tag>, preview-caddy:<tag>; prints
# POSTGRES_IMAGE=..., REDIS_IMAGE=..., LB_IMAGE=... lines for a compose env file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../offline-base/copy-with-libs.sh
. "$here/../offline-base/copy-with-libs.sh"
tag=${1:-offline}
base=${BASE_IMAGE:-preview-node-base:$(node -p 'process.versions.node')}
build=$here/.build
emit() { printf 'POSTGRES_IMAGE=preview-postgres:%s\nREDIS_IMAGE=preview-redis:%s\nLB_IMAGE=preview-caddy:%s\n' "$tag" "$tag" "$tag"; }

# Skip the work when all three images were built from the same inputs.
inputs=$( { docker image inspect --format '{{.Id}}' "$base"; cat "$here/Dockerfile" "$here/postgres-entrypoint.sh" "$0";
  dpkg-query -W -f '${Package} ${Version}\n' 'postgresql-[0-9]*' redis-server 2>/dev/null;
  apt-cache policy caddy 2>/dev/null | grep Candidate; } | sha256sum | cut -c1-16)
fresh=1
for service in postgres redis caddy; do
  [ "$(docker image inspect --format '{{index .Config.Labels "preview.inputs"}}' "preview-$service:$tag" 2>/dev/null || true)" = "$inputs" ] || fresh=0
done
if [ "$fresh" = 1 ]; then emit; exit 0; fi
rm -rf "$build" && mkdir -p "$build"

# PostgreSQL: the server's binaries, modules (plpgsql) and share files, under their Debian paths.
pgbin=$(dirname "$(readlink -f "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")")
pgdir=$(dirname "$pgbin")
major=$(basename "$pgdir")
root=$build/postgres/rootfs
for b in postgres initdb pg_ctl pg_isready psql; do copy_with_libs "$root" "$pgbin/$b"; done
for so in "$pgdir"/lib/*.so; do copy_with_libs "$root" "$so"; done
mkdir -p "$root/usr/share/postgresql" "$root/usr/share" "$root/usr/local/bin"
cp -a "/usr/share/postgresql/$major" "$root/usr/share/postgresql/"
cp -a /usr/share/zoneinfo "$root/usr/share/"
ln -s "$major/bin" "$root/usr/lib/postgresql/bin"
cp "$here/postgres-entrypoint.sh" "$root/usr/local/bin/"

# Redis.
root=$build/redis/rootfs
[ -e /usr/bin/redis-server ] || { echo "redis-server not installed (Debian package redis-server)" >&2; exit 1; }
# Debian's redis-server is a link to the one binary, which acts by the name it was started under.
server=$(readlink -f /usr/bin/redis-server)
copy_with_libs "$root" "$server"
copy_with_libs "$root" /usr/bin/redis-cli
[ "$server" = /usr/bin/redis-server ] || ln -s "$(basename "$server")" "$root/usr/bin/redis-server"

# Caddy, from its Debian package.
root=$build/caddy/rootfs
deb=$(mktemp -d)
# A fresh machine may have no package lists yet.
(cd "$deb" && { apt-get download caddy >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download caddy >/dev/null; }; }) ||
  { echo "apt-get download caddy failed" >&2; exit 1; }
dpkg-deb -x "$deb"/caddy_*.deb "$deb/x"
copy_with_libs "$root" "$deb/x/usr/bin/caddy"
mkdir -p "$root/usr/bin"
[ -e "$root/usr/bin/caddy" ] || mv "$root$deb/x/usr/bin/caddy" "$root/usr/bin/caddy"
rm -rf "$root/tmp" "$deb"

for service in postgres redis caddy; do
  cp "$here/Dockerfile" "$build/$service/Dockerfile"
  docker build -q --build-arg BASE_IMAGE="$base" --label preview.inputs="$inputs" --target "$service" -t "preview-$service:$tag" "$build/$service" >/dev/null 2>&1 ||
    { docker build --build-arg BASE_IMAGE="$base" --target "$service" -t "preview-$service:$tag" "$build/$service" >&2; exit 1; }
done
rm -rf "$build"
emit
