#!/usr/bin/env bash
# Sourced by test/cluster/{base-image,image}.sh. `ensure_docker_engine` makes `docker info` work:
# uses a running engine if there is one; otherwise installs docker.io (apt) if needed and starts
# dockerd in the background (log: $KREG_DOCKERD_LOG), waiting for its socket. Never assumes one runs.
# `docker_engine_reachable` only checks. Both are silent on success except for what they start.

KREG_DOCKERD_LOG=${KREG_DOCKERD_LOG:-/var/log/kreg-dockerd.log}
KREG_DOCKERD_WAIT=${KREG_DOCKERD_WAIT:-60}

kreg_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kreg_die() { kreg_log "ERROR: $*"; exit 1; }

docker_engine_reachable() {
  command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

install_docker_io() {
  [ "$(id -u)" = 0 ] || kreg_die "dockerd is not installed and installing it needs root (apt-get install docker.io)"
  kreg_log "installing docker.io (apt)"
  local created_policy=0
  # Keep package postinsts from starting daemons; remove the guard only if we created it.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends docker.io \
    >/tmp/kreg-apt-docker.log 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    # A stale package list is the usual cause on a fresh machine.
    apt-get -o DPkg::Lock::Timeout=900 update >>/tmp/kreg-apt-docker.log 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends docker.io \
      >>/tmp/kreg-apt-docker.log 2>&1 || rc=$?
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || kreg_die "apt-get install docker.io failed (see /tmp/kreg-apt-docker.log)"
  fi
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

ensure_docker_engine() {
  docker_engine_reachable && return 0
  [ "$(id -u)" = 0 ] || kreg_die "no Docker engine reachable for uid $(id -u) (docker info failed), and starting one needs root"
  command -v dockerd >/dev/null 2>&1 || install_docker_io
  command -v dockerd >/dev/null 2>&1 || kreg_die "dockerd not found after installing docker.io"
  if [ -S /var/run/docker.sock ] && ! pgrep -x dockerd >/dev/null 2>&1; then
    rm -f /var/run/docker.sock   # stale socket from a dead engine
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    kreg_log "starting dockerd (log: $KREG_DOCKERD_LOG)"
    mkdir -p "$(dirname "$KREG_DOCKERD_LOG")"
    # setsid + nohup: the engine outlives this script (and the shell that ran it).
    setsid nohup dockerd >>"$KREG_DOCKERD_LOG" 2>&1 </dev/null &
  else
    kreg_log "dockerd is running but not answering yet; waiting"
  fi
  local i
  for ((i = 0; i < KREG_DOCKERD_WAIT * 2; i++)); do
    if docker_engine_reachable; then
      kreg_log "Docker engine up ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null))"
      return 0
    fi
    sleep 0.5
  done
  tail -20 "$KREG_DOCKERD_LOG" >&2 2>/dev/null || true
  kreg_die "Docker engine did not come up within ${KREG_DOCKERD_WAIT}s (log: $KREG_DOCKERD_LOG)"
}
