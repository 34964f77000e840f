#!/usr/bin/env bash
# load-image.sh <image-ref> [<image-ref>...] -- like `kind load docker-image`: copy images from the local
# Docker engine into the kreg cluster's containerd (namespace k8s.io). Starts nothing.
# Use an explicit tag (not :latest) and imagePullPolicy: IfNotPresent/Never in your manifests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$#" -ge 1 ] || die "usage: $0 <image-ref> [<image-ref>...]"
[ "$(id -u)" = 0 ] || die "load-image.sh must run as root (it talks to $CTR_SOCK)"
command -v docker >/dev/null || die "docker CLI not found"
command -v ctr >/dev/null || die "ctr not found: run test/cluster/install-deps.sh"
docker info >/dev/null 2>&1 || die "Docker engine not reachable (docker info failed); load-image.sh needs a running dockerd that has the image"
[ -S "$CTR_SOCK" ] && ctr -a "$CTR_SOCK" version >/dev/null 2>&1 || die "kreg cluster is not up (no containerd at $CTR_SOCK): run test/cluster/up.sh"
for ref in "$@"; do
  case "$ref" in *:latest|*@*) ;; *:*) ;; *) echo "WARNING: $ref has no tag (means :latest -> imagePullPolicy Always); use an explicit tag" >&2;; esac
  docker image inspect "$ref" >/dev/null 2>&1 || die "image $ref not found in the local Docker engine (docker images)"
  t=$(now)
  docker save "$ref" | ctr -a "$CTR_SOCK" -n k8s.io images import --all-platforms - >/dev/null \
    || die "import of $ref into the cluster's containerd failed"
  name=$(ctr -a "$CTR_SOCK" -n k8s.io images ls -q | grep -F -- "${ref##*/}" | head -1)
  log "loaded $ref into the cluster as ${name:-?} ($(since "$t") s)"
done
