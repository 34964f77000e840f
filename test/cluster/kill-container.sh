#!/usr/bin/env bash
# kill-container.sh <containerd://id | id> -- SIGKILL a container's main process from the host, as
# the kernel's OOM killer or a crash would: no signal handler runs, nothing is flushed. (Inside the
# container the process is PID 1 of its namespace, and PID 1 cannot be sent SIGKILL from there.)
# The kubelet then restarts the container. Needs root and the kreg cluster's containerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$#" -eq 1 ] || die "usage: $0 <container id, as in a pod's status.containerStatuses[].containerID>"
id=${1#containerd://}
[ -S "$CTR_SOCK" ] || die "no containerd at $CTR_SOCK: is the kreg cluster up?"
pid=$(ctr -a "$CTR_SOCK" -n k8s.io task ls | awk -v id="$id" '$1 == id { print $2 }')
[ -n "$pid" ] && [ "$pid" != 0 ] || die "no running task for container $id"
kill -KILL "$pid"
log "killed container ${id:0:12} (host pid $pid) with SIGKILL"
