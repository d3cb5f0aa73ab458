#!/usr/bin/env bash
# Builds a local Node base image with no registry: the host's Node runtime, npm, a few core
# utilities and the shared libraries they load, imported as a root filesystem (`docker import`).
# Inputs: $1 = image name (default preview-node-base:<node version>). Changes: creates that image.
# Used by the test setup and by nodes without registry access; real deployments build
# docker/preview-base/Dockerfile on a Node slim image instead.
set -euo pipefail
node_version=$(node -p 'process.versions.node')
image=${1:-preview-node-base:${node_version}}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# shellcheck source=copy-with-libs.sh
. "$(dirname "$0")/copy-with-libs.sh"

node_bin=$(readlink -f "$(command -v node)")
copy_with_libs "$root" "$node_bin"
mkdir -p "$root/usr/local/bin"
cp -L "$node_bin" "$root/usr/local/bin/node"

# Core utilities for Dockerfile RUN steps and the daemon's child processes.
for b in sh dash mkdir chown chmod ls cat rm cp mv ln env id sleep true false echo grep sed head tail touch \
         sort wc tr tar gzip find xargs uname dirname basename readlink; do
  p=$(type -P "$b" || true)
  [ -n "$p" ] && copy_with_libs "$root" "$(readlink -f "$p")" && {
    mkdir -p "$root/bin"
    [ -e "$root/bin/$b" ] || cp -L "$p" "$root/bin/$b"
  }
done
ln -sf dash "$root/bin/sh"

# Libraries loaded at run time rather than linked: Vite's rollup native module needs librt and
# libutil; name resolution needs the NSS modules.
libdir=/lib/x86_64-linux-gnu
[ -d "$libdir" ] || libdir=/lib/$(uname -m)-linux-gnu
mkdir -p "$root$libdir"
for lib in librt.so.1 libutil.so.1 libnss_files.so.2 libnss_dns.so.2 libresolv.so.2 libdl.so.2 libpthread.so.0; do
  [ -e "$libdir/$lib" ] && cp -L "$libdir/$lib" "$root$libdir/$lib"
done
if [ -e /lib64/ld-linux-x86-64.so.2 ]; then mkdir -p "$root/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"; fi

# npm and corepack as the Node image ships them.
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# CA bundle (this machine intercepts TLS), users, hosts, and an empty /tmp.
mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/node" "$root/root"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
cat >"$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
P
cat >"$root/etc/group" <<'G'
root:x:0:
node:x:1000:
nogroup:x:65534:
G
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
chown 1000:1000 "$root/home/node"

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV NODE_VERSION='"$node_version" \
  --change 'CMD ["node"]' \
  - "$image" >/dev/null
echo "$image"
