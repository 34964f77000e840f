#!/usr/bin/env bash
# image.sh [<tag>] — build the service image (default kreg/registration:dev) with the repo's Dockerfile
# on a machine without registry access: starts a Docker engine if none runs, builds the local base
# image (test/cluster/base-image.sh, reused when present) and passes it as BASE_IMAGE.
# `npm run image` runs this. Environment:
#   KREG_IMAGE          tag to build (or the first argument)      default kreg/registration:dev
#   KREG_IMAGE_TARGET   Dockerfile stage: runtime (the service) or operator   default runtime
#                       (`npm run image:operator` builds kreg/operator:dev)
#   KREG_BASE_IMAGE     base image to build on; a kreg/* one is built by base-image.sh when absent or stale
#                       (set it to node:24-bookworm-slim where Docker Hub is reachable)
#   KREG_BUILD_NETWORK  docker build --network value (e.g. host) if containers cannot reach the npm registry
#   KREG_BUILD_NO_CACHE=1  rebuild every layer
#   KREG_IMAGE_LABELS   extra labels, "key=value key=value" (kreg dev marks its builds, so their image
#                       ids never equal an `npm run image` build of the same tree)
#   KREG_NPM_EXTRA_CA_FILE  PEM file of extra CAs for npm inside the build (default: the machine's
#                       /usr/local/share/ca-certificates/*.crt, needed where TLS is intercepted)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../infra/scripts/docker-engine.sh
source "$ROOT/infra/scripts/docker-engine.sh"

IMAGE=${1:-${KREG_IMAGE:-kreg/registration:dev}}
BASE=${KREG_BASE_IMAGE:-kreg/node-base:24-bookworm}

ensure_docker_engine
case "$BASE" in
  # Built here, and rebuilt when its recipe changed (base-image.sh skips an up-to-date one).
  kreg/*) KREG_BASE_IMAGE=$BASE bash "$ROOT/test/cluster/base-image.sh" "$BASE" ;;
  *) docker image inspect "$BASE" >/dev/null 2>&1 || kreg_log "base $BASE is not local; docker build will try to pull it" ;;
esac

extra_ca=""
if [ -n "${KREG_NPM_EXTRA_CA_FILE:-}" ]; then
  extra_ca=$(cat "$KREG_NPM_EXTRA_CA_FILE")
elif compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  extra_ca=$(cat /usr/local/share/ca-certificates/*.crt)
fi

args=(--tag "$IMAGE" --target "${KREG_IMAGE_TARGET:-runtime}" --build-arg "BASE_IMAGE=$BASE" --label "org.opencontainers.image.source=kreg")
[ -n "$extra_ca" ] && args+=(--build-arg "NPM_EXTRA_CA=$extra_ca")
[ -n "${KREG_BUILD_NETWORK:-}" ] && args+=(--network "$KREG_BUILD_NETWORK")
[ "${KREG_BUILD_NO_CACHE:-0}" = 1 ] && args+=(--no-cache)
for label in ${KREG_IMAGE_LABELS:-}; do args+=(--label "$label"); done
# Revision label for traceability; absent outside git.
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
[ -n "$rev" ] && args+=(--label "org.opencontainers.image.revision=$rev")

t0=$(date +%s)
kreg_log "docker build $IMAGE (target ${KREG_IMAGE_TARGET:-runtime}, base $BASE)"
log=$(mktemp /tmp/kreg-image-build.XXXXXX.log)
if ! docker build "${args[@]}" "$ROOT" >"$log" 2>&1; then
  tail -40 "$log" >&2
  kreg_die "docker build failed (full log: $log)"
fi
rm -f "$log"
size=$(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')
kreg_log "built $IMAGE in $(( $(date +%s) - t0 )) s ($size)"
