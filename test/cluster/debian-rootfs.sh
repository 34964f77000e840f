# shellcheck shell=bash
# Sourced by the image builders (base-image.sh, postgres-image.sh): a Debian bookworm minbase rootfs
# from debootstrap, with the bootstrap's tarball cached in $CACHE so that a rebuild needs no mirror.
# Needs kreg_log/kreg_die (infra/scripts/docker-engine.sh) and root.

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return 0
  kreg_log "installing debootstrap (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends debootstrap \
    >/tmp/kreg-apt-debootstrap.log 2>&1 || kreg_die "apt-get install debootstrap failed (see /tmp/kreg-apt-debootstrap.log)"
}

# unpack_minbase <rootfs> <work dir> <mirror> <cache dir>
unpack_minbase() {
  local rootfs=$1 work=$2 mirror=$3 cache=$4
  local tgz=$cache/bookworm-minbase.tgz
  mkdir -p "$cache"
  if [ ! -s "$tgz" ]; then
    kreg_log "debootstrap --variant=minbase bookworm ($mirror)"
    debootstrap --variant=minbase --make-tarball="$tgz.part" bookworm "$work/tarball-work" "$mirror" \
      >"$cache/debootstrap-tarball.log" 2>&1 || { tail -20 "$cache/debootstrap-tarball.log" >&2; kreg_die "debootstrap (download) failed"; }
    mv "$tgz.part" "$tgz"
    rm -rf "$work/tarball-work"
  fi
  kreg_log "debootstrap bookworm rootfs"
  debootstrap --variant=minbase --unpack-tarball="$tgz" bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; kreg_die "debootstrap failed"; }
}
