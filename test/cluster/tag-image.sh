#!/usr/bin/env bash
# tag-image.sh <image-ref> <new-ref> -- give an image already in the kreg cluster's containerd a
# second name, without copying it again (a rollout to "another" image in tests, in milliseconds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$#" -eq 2 ] || die "usage: $0 <image-ref> <new-ref>"
full() { case "$1" in */*/*) echo "$1" ;; */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac; }
ctr -a "$CTR_SOCK" -n k8s.io images tag --force "$(full "$1")" "$(full "$2")" >/dev/null \
  || die "could not tag $1 as $2 in the cluster's containerd (is $1 loaded? test/cluster/load-image.sh)"
log "tagged $1 as $2 in the cluster"
