#!/usr/bin/env bash
# restart-apiserver.sh [--down-seconds N] -- kill the local cluster's kube-apiserver with SIGKILL (no
# graceful drain: every client connection and watch breaks at once), keep it down N seconds (default
# 0), start it again with the same command line, and wait until /readyz answers. For tests that a
# client recovers from an API server restart. Starts nothing else; needs a running cluster (up.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
down=0
[ "${1:-}" = "--down-seconds" ] && down=${2:?--down-seconds needs a number}
pidfile="$RUNDIR/pids/kube-apiserver.pid"
[ -f "$pidfile" ] || die "no $pidfile: is the cluster up? (npm run cluster:up)"
pid=$(cat "$pidfile")
[ -r "/proc/$pid/cmdline" ] || die "kube-apiserver (pid $pid) is not running"
mapfile -d '' cmd < "/proc/$pid/cmdline"
t=$(now)
kill -KILL "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
sleep "$down"
setsid "${cmd[@]}" >> "$LOGS/kube-apiserver.log" 2>&1 < /dev/null &
echo $! > "$pidfile"
PKI="$STATE/pki"
for _ in $(seq 1 600); do
  if curl -fsS --cacert "$PKI/ca.crt" https://127.0.0.1:6443/readyz 2>/dev/null | grep -q ok; then
    log "kube-apiserver restarted (pid $!, down ${down}s, ready after $(since "$t") s)"
    exit 0
  fi
  kill -0 "$!" 2>/dev/null || die "the restarted kube-apiserver exited (log: $LOGS/kube-apiserver.log)"
  sleep 0.2
done
die "the restarted kube-apiserver was not ready within 120 s"
