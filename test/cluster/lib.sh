# shellcheck shell=bash
# shellcheck disable=SC2034
# Shared settings for the kreg local cluster scripts. Sourced, not executed.
KREG_K8S_VERSION="${KREG_K8S_VERSION:-v1.35.4}"
KREG_ETCD_VERSION="${KREG_ETCD_VERSION:-v3.6.16}"
KREG_COREDNS_VERSION="${KREG_COREDNS_VERSION:-v1.14.7}"   # v1.14.7 uses client-go v0.35.4 like us
# metrics-server (kubectl top, HorizontalPodAutoscalers), run as a host process beside the kubelet.
KREG_METRICS_SERVER_VERSION="${KREG_METRICS_SERVER_VERSION:-v0.8.0}"
KREG_PROTOBUF_VERSION="${KREG_PROTOBUF_VERSION:-v1.36.12}"
# The local image registry (distribution, the CNCF registry), built from the Go module proxy like the rest.
KREG_REGISTRY_VERSION="${KREG_REGISTRY_VERSION:-v3.1.2}"

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CLUSTER_DIR/../.." && pwd)"
CACHE_ROOT="${KREG_CACHE_ROOT:-/var/cache/kreg-k8s}"
CACHE="$CACHE_ROOT/$KREG_K8S_VERSION"
BIN="$CACHE/bin"
STATE="${KREG_STATE_DIR:-/var/lib/kreg-cluster}"
RUNDIR="${KREG_RUN_DIR:-/run/kreg-cluster}"
OUT="$REPO_DIR/.cluster"
LOGS="$OUT/logs"
KUBECONFIG_OUT="$OUT/kubeconfig"
CTR_SOCK="$RUNDIR/containerd.sock"
NODE_NAME=127.0.0.1
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/24
DNS_IP=10.96.0.10
CNI_BRIDGE=kreg0
CNI_NET=kreg
PORTS="2379 2380 6443 10250 10257 10259 10249 10256 5001"
# The local registry, on loopback: the node's containerd pulls from it, `docker push` reaches it
# (Docker treats localhost registries as plain HTTP), and the cluster announces it (KEP-1755).
REGISTRY_HOST=localhost:5001
COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"

die() { echo "ERROR: $*" >&2; exit 1; }
# down.sh rm -rf's these: refuse anything that does not look like ours
for _d in "$STATE" "$RUNDIR" "$CACHE_ROOT"; do
  case "$_d" in /*kreg*) ;; *) die "refusing state/run/cache dir '$_d' (must be an absolute path containing 'kreg')";; esac
done
log() { echo "[$(date +%H:%M:%S)] $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# mkimage <ref> <rootfs-dir> <entrypoint-json-array> <out.tar>
# Writes a docker-archive tarball (manifest.json + config + one layer) that `ctr images import` accepts,
# without Docker or a registry.
mkimage() {
  local ref=$1 root=$2 ep=$3 out=$4 w
  w=$(mktemp -d)
  tar -C "$root" --numeric-owner --owner=0 --group=0 --mtime='2000-01-01' --sort=name -cf "$w/layer.tar" .
  local lsum; lsum=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
  mkdir "$w/$lsum"; mv "$w/layer.tar" "$w/$lsum/layer.tar"
  jq -n --argjson ep "$ep" --arg d "sha256:$lsum" '{architecture:"amd64",os:"linux",created:"2000-01-01T00:00:00Z",
      config:{Entrypoint:$ep,Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],WorkingDir:"/"},
      rootfs:{type:"layers",diff_ids:[$d]},history:[{created:"2000-01-01T00:00:00Z",created_by:"kreg mkimage"}]}' > "$w/config.json"
  local csum; csum=$(sha256sum "$w/config.json" | cut -d' ' -f1)
  mv "$w/config.json" "$w/$csum.json"
  jq -n --arg c "$csum.json" --arg r "$ref" --arg l "$lsum/layer.tar" '[{Config:$c,RepoTags:[$r],Layers:[$l]}]' > "$w/manifest.json"
  tar -C "$w" -cf "$out.tmp" manifest.json "$csum.json" "$lsum"
  mv "$out.tmp" "$out"; rm -rf "$w"
}

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }
ctr_k8s() { ctr -a "$CTR_SOCK" -n k8s.io "$@"; }

# pids of processes one of whose argv elements contains $1 (fixed string), excluding this shell
pids_matching() {
  local p
  # (the grep itself matches too; it is gone by the time we test /proc/$p)
  for p in $(grep -laF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$p" != "$$" ] && [ -d "/proc/$p" ] && ! proc_is_zombie "$p" && echo "$p"
  done
  return 0
}
proc_is_zombie() { # a killed daemon whose parent (init) has not reaped it yet counts as gone
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}
