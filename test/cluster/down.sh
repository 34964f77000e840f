#!/usr/bin/env bash
# Tear down the kreg test cluster: every process, mount, network device, iptables chain, cgroup and state
# directory up.sh created -- and nothing else (Docker's dockerd/containerd/containers are never touched).
# Safe to run when nothing is up; idempotent. Component logs in .cluster/logs are kept.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || die "down.sh must run as root"
T0=$(now)
dbg() { if [ -n "${KREG_DEBUG:-}" ]; then log "$* (+$(since "$T0") s)"; fi; }

kill_pid() { # pid signal
  kill "-$2" "$1" 2>/dev/null || true
}
wait_gone() { # seconds pids...
  local end=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
  local p
  while :; do
    local alive=""
    for p in "$@"; do [ -d "/proc/$p" ] && ! proc_is_zombie "$p" && alive+=" $p"; done
    [ -z "$alive" ] && return 0
    [ $(( $(date +%s%N) / 1000000 )) -lt "$end" ] || { for p in $alive; do kill_pid "$p" KILL; done; sleep 0.2; return 0; }
    sleep 0.1
  done
}
stop_daemon() { # name  -- by pidfile, only if the process still is ours
  local f="$RUNDIR/pids/$1.pid" p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if [ -d "/proc/$p" ] && tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -qE -- "$STATE/|$RUNDIR/"; then
    kill_pid "$p" TERM; echo "$p"
  fi
  rm -f "$f"
}

# 1. control plane + node daemons (containerd last)
pids=""
for d in metrics-server kube-proxy local-path-provisioner kubelet kube-scheduler kube-controller-manager kube-apiserver etcd registry; do
  pids+=" $(stop_daemon "$d")"
done
# fallback for lost pidfiles: our own binaries (from $CACHE_ROOT) whose command line references our state dir
for p in $(pids_matching "$STATE/"); do
  case "$(readlink "/proc/$p/exe" 2>/dev/null)" in "$CACHE_ROOT"/*) kill_pid "$p" TERM; pids+=" $p";; esac
done
# shellcheck disable=SC2086
wait_gone 10 $pids

dbg "2. pod processes"
# 2. pod processes: everything inside our cgroup tree /kreg
cg_procs() { find /sys/fs/cgroup/ -path '*/kreg/*' -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u; }
for i in 1 2 3; do
  cp=$(cg_procs); [ -z "$cp" ] && break
  for p in $cp; do kill_pid "$p" KILL; done
  sleep 0.3
done

dbg "ids of our sandboxes"
# ids of our sandboxes/containers (for CNI result-cache entries), read before the state is removed
ctr_ids=$(ls "$RUNDIR"/containerd/io.containerd.runtime.v2.task/k8s.io/ 2>/dev/null || true)
ctr_ids+=" $(ls "$STATE"/containerd/io.containerd.grpc.v1.cri/sandboxes/ 2>/dev/null || true)"

dbg "3. shims of OUR"
# 3. shims of OUR containerd (matched by our socket path), then containerd itself
shim_sockets=$(cat "$RUNDIR"/containerd/io.containerd.runtime.v2.task/*/*/address 2>/dev/null || true)
shims=""
for p in $(pids_matching "$CTR_SOCK"); do
  case "$(readlink "/proc/$p/exe" 2>/dev/null)" in *containerd-shim*) shims+=" $p";; esac
done
for p in $shims; do kill_pid "$p" KILL; done
# (containerd's state is deleted below, so a graceful shutdown buys nothing)
ctrpid=""
for p in $(cat "$RUNDIR/pids/containerd.pid" 2>/dev/null) $(pids_matching "$STATE/containerd.toml"); do
  tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -qF -- "--config $STATE/containerd.toml" || continue
  kill_pid "$p" KILL; ctrpid+=" $p"
done
rm -f "$RUNDIR/pids/containerd.pid"
# shellcheck disable=SC2086
wait_gone 10 $shims $ctrpid
for s in $shim_sockets; do s=${s#unix://}; case "$s" in /run/containerd/s/*) rm -f "$s";; esac; done

dbg "4. mounts under"
# 4. mounts under our state/run dirs (deepest first)
for pass in 1 2 3; do
  mnts=$(awk -v a="$STATE" -v b="$RUNDIR" '{ if (index($5, a"/")==1 || $5==a || index($5, b"/")==1 || $5==b) print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  [ -z "$mnts" ] && break
  while read -r m; do [ -n "$m" ] && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }; done <<<"$mnts"
done

dbg "5. network"
# 5. network: veths on our bridge, the bridge
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  for v in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v" 2>/dev/null || true; done
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
fi

dbg "6. iptables"
# 6. iptables: kube-proxy/kubelet KUBE-* chains, CNI masquerade chains of network "kreg", our KREG-FORWARD
clean_ipt() { # binary
  local ipt=$1 t c rule cni_chains
  local mark="name: \\\\\"$CNI_NET\\\\\" id: "   # iptables -S prints: --comment "name: \"kreg\" id: \"...\""
  command -v "$ipt" >/dev/null || return 0
  for t in filter nat mangle raw; do
    "$ipt" -t "$t" -S >/dev/null 2>&1 || continue
    # CNI per-container chains of our network (collected first: their own rules carry our comment)
    cni_chains=$("$ipt" -t "$t" -S 2>/dev/null | grep -E "^-A CNI-[^ ]+ .*$mark" | awk '{print $2}' | sort -u)
    # rules in other chains that jump to KUBE-*/KREG-* chains or carry our CNI network's comment
    "$ipt" -t "$t" -S 2>/dev/null | grep -E -- '^-A ' | grep -E -- "-j (KUBE-|KREG-)|$mark" \
      | grep -vE '^-A (KUBE-|KREG-)' | while read -r rule; do
        eval "\"$ipt\" -t $t ${rule/-A /-D }" 2>/dev/null || true
      done
    for c in $cni_chains; do "$ipt" -t "$t" -F "$c" 2>/dev/null; "$ipt" -t "$t" -X "$c" 2>/dev/null || true; done
    for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1=="-N" && ($2 ~ /^KUBE-/ || $2 ~ /^KREG-/) {print $2}'); do
      "$ipt" -t "$t" -F "$c" 2>/dev/null || true
    done
    for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1=="-N" && ($2 ~ /^KUBE-/ || $2 ~ /^KREG-/) {print $2}'); do
      "$ipt" -t "$t" -X "$c" 2>/dev/null || true
    done
  done
}
clean_ipt iptables
clean_ipt ip6tables

dbg "7. cgroups"
# 7. cgroups (bottom-up)
for root in /sys/fs/cgroup/*/kreg /sys/fs/cgroup/kreg; do
  [ -d "$root" ] || continue
  find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

dbg "8. host bits"
# 8. host bits: sysctls we changed (restored), CNI result cache entries, kubelet log symlinks
if [ -f "$STATE/sysctl.saved" ]; then
  while IFS='=' read -r k v; do [ -n "$k" ] && sysctl -qw "$k=$v" 2>/dev/null || true; done < "$STATE/sysctl.saved"
fi
rm -f /var/lib/cni/results/"$CNI_NET"-* 2>/dev/null || true
for id in $ctr_ids; do rm -f /var/lib/cni/results/*-"$id"-* 2>/dev/null || true; done
if [ -d /var/log/containers ]; then
  find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
fi
# host directories that did not exist before up.sh (recorded in $STATE/created-dirs) are removed if empty
if [ -f "$STATE/created-dirs" ]; then
  while read -r d; do
    # kubelet's device-plugin socket path is hard-coded to /var/lib/kubelet/device-plugins/kubelet.sock
    [ "$d" = /var/lib/kubelet ] && rm -f /var/lib/kubelet/device-plugins/kubelet.sock
    if [ -n "$d" ] && [ -d "$d" ]; then find "$d" -depth -type d -empty -delete 2>/dev/null || true; fi
  done < "$STATE/created-dirs"
fi

dbg "9. state"
# 9. state
rm -rf "$STATE" "$RUNDIR" 2>/dev/null || {
  echo "ERROR: could not remove $STATE / $RUNDIR (still mounted?): $(awk -v a="$STATE" '$5 ~ a {print $5}' /proc/self/mountinfo | head -3)" >&2; exit 1; }
rm -f "$KUBECONFIG_OUT"

# report anything left over (should be nothing)
left=""
[ -n "$(pids_matching "$STATE/")$(pids_matching "$CTR_SOCK")" ] && left+=" processes"
ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && left+=" $CNI_BRIDGE"
iptables-save 2>/dev/null | grep -qE ':(KUBE-|KREG-)' && left+=" iptables-chains"
iptables-save -t nat 2>/dev/null | grep -qF "name: \\"$CNI_NET\\"" && left+=" cni-iptables-chains"
ip6tables-save 2>/dev/null | grep -qE ':(KUBE-|KREG-)' && left+=" ip6tables-chains"
ls -d /sys/fs/cgroup/*/kreg >/dev/null 2>&1 && left+=" cgroups"
grep -qE " ($STATE|$RUNDIR)[/ ]" /proc/self/mountinfo && left+=" mounts"
if [ -n "$left" ]; then echo "ERROR: down.sh left behind:$left" >&2; exit 1; fi
log "cluster down ($(since "$T0") s)"
