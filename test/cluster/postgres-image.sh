#!/usr/bin/env bash
# postgres-image.sh [--force] [<tag>] — build the PostgreSQL image the charts run
# (charts/postgres.ts) without a registry: Debian bookworm (debootstrap minbase, the tarball
# base-image.sh caches) + Debian's postgresql-15 (from bookworm-security, for the latest minor),
# imported with `docker import`, then infra/images/postgres (entrypoint, uid 999, STOPSIGNAL SIGINT).
# JIT (LLVM) is left out: PostgreSQL turns it off by itself when its provider is missing, and it is
# half the image. Default tag kreg/postgres:15. Skipped when an image of that tag was built from the
# same recipe (this script and infra/images/postgres), unless --force.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../infra/scripts/docker-engine.sh
source "$ROOT/infra/scripts/docker-engine.sh"
# shellcheck source=debian-rootfs.sh
source "$ROOT/test/cluster/debian-rootfs.sh"

FORCE=0
TAG=${KREG_POSTGRES_IMAGE:-kreg/postgres:15}
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) TAG=$arg ;;
  esac
done
MIRROR=${KREG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KREG_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${KREG_BASE_CACHE:-/var/cache/kreg-base}
RECIPE=$(cat "$0" "$ROOT/test/cluster/debian-rootfs.sh" "$ROOT/infra/images/postgres/Dockerfile" "$ROOT/infra/images/postgres/entrypoint.sh" | sha256sum | cut -c1-16)

ensure_docker_engine
if [ "$FORCE" = 0 ] && [ "$(docker image inspect "$TAG" --format '{{index .Config.Labels "kreg.recipe"}}' 2>/dev/null || true)" = "$RECIPE" ]; then
  kreg_log "postgres image $TAG is built from this recipe ($RECIPE); skipping (--force rebuilds)"
  exit 0
fi
[ "$(id -u)" = 0 ] || kreg_die "postgres-image.sh must run as root (debootstrap, chroot)"
ensure_debootstrap

t0=$(date +%s)
mkdir -p "$CACHE"
WORK=$(mktemp -d /var/tmp/kreg-postgres.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs
unpack_minbase "$ROOTFS" "$WORK" "$MIRROR" "$CACHE"

# The ids the charts run as, fixed before the package would pick its own.
chroot "$ROOTFS" /usr/sbin/groupadd --system --gid 999 postgres
chroot "$ROOTFS" /usr/sbin/useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres
# No cluster is made by the package, and nothing starts inside the chroot.
mkdir -p "$ROOTFS/etc/postgresql-common"
echo 'create_main_cluster = false' >"$ROOTFS/etc/postgresql-common/createcluster.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d" && chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
echo "deb $SECURITY_MIRROR bookworm-security main" >>"$ROOTFS/etc/apt/sources.list"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
kreg_log "apt-get install postgresql-15 (in the rootfs)"
{ chroot "$ROOTFS" apt-get update -q && chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15; } \
  >"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; kreg_die "apt-get install postgresql-15 failed"; }
PG_VERSION=$(chroot "$ROOTFS" /usr/lib/postgresql/15/bin/postgres --version)
rm -f "$ROOTFS/usr/sbin/policy-rc.d" "$ROOTFS/etc/resolv.conf"

# Slim: no apt lists, docs, man pages, translations; no JIT (LLVM and the solver only it uses).
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/* \
  "$ROOTFS"/usr/lib/postgresql/15/lib/llvmjit* "$ROOTFS"/usr/lib/postgresql/15/lib/bitcode \
  "$ROOTFS"/usr/lib/x86_64-linux-gnu/libLLVM-14.so* "$ROOTFS"/usr/lib/x86_64-linux-gnu/libz3.so*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$ROOTFS/var/lib/postgresql/data" "$ROOTFS/var/run/postgresql"
chroot "$ROOTFS" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

ROOTFS_TAG=${TAG%%:*}-rootfs:${TAG##*:}
kreg_log "docker import → $ROOTFS_TAG ($PG_VERSION)"
tar --numeric-owner -C "$ROOTFS" -c . | docker import --message "debootstrap minbase bookworm + $PG_VERSION" - "$ROOTFS_TAG" >/dev/null
docker build --quiet --build-arg "ROOTFS_IMAGE=$ROOTFS_TAG" --label "kreg.recipe=$RECIPE" --label "org.opencontainers.image.source=kreg" \
  --tag "$TAG" "$ROOT/infra/images/postgres" >/dev/null
kreg_log "built $TAG in $(( $(date +%s) - t0 )) s ($(docker image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'), $PG_VERSION)"
