#!/usr/bin/env bash
# Build everything the kreg test cluster needs, from upstream Go modules, into
#   /var/cache/kreg-k8s/<k8s-version>/bin
# Idempotent: an artefact whose stamp (version + sources + flags) matches is skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOMODCACHE="$CACHE/gomodcache" GOCACHE="$CACHE/gocache"
export GOFLAGS="-mod=mod -buildvcs=false"
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
P="${KREG_BUILD_P:-2}"
SRC="$CACHE/src"
T0=$(now)

# Go's official tarball installs to /usr/local/go, which non-login shells often lack on PATH.
command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"; } || true
command -v go >/dev/null || die "go not found in PATH (need Go >= 1.26 locally; GOTOOLCHAIN=local)"
command -v gcc >/dev/null || die "gcc not found (needed for the static pause binary): apt-get install gcc libc6-dev"
command -v jq >/dev/null || die "jq not found: run test/cluster/install-deps.sh"
GOV=$(go env GOVERSION)
case "$GOV" in go1.2[6-9]*|go1.[3-9]*) ;; *) die "Go $GOV is too old: need go1.26+ (k8s $KREG_K8S_VERSION deps say go 1.25/1.26)";; esac
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE" "$SRC"
avail=$(df -Pk "$CACHE" | awk 'NR==2{print $4}')
[ "$avail" -gt $((8*1024*1024)) ] || [ -e "$BIN/.stamp-kreg-k8s" ] || die "less than 8 GiB free under $CACHE ($((avail/1024)) MiB); the cold build needs ~6-8 GiB"

stamp_ok() { [ -x "$BIN/$1" ] && [ -f "$BIN/.stamp-$1" ] && [ "$(cat "$BIN/.stamp-$1")" = "$2" ]; }
hashof() { cat "$@" | sha256sum | cut -c1-32; }
phase_times=()
phase() { phase_times+=("$(printf '%-28s %7ss' "$1" "$2")"); log "phase $1: $2 s"; }

MAJ=${KREG_K8S_VERSION#v}; MAJ=${MAJ%%.*}; MIN=${KREG_K8S_VERSION#v*.}; MIN=${MIN%%.*}
K8S_LDFLAGS_FILE="$SRC/k8s/ldflags"

# ---------------------------------------------------------------- kube (combined binary)
build_k8s() {
  local want; want="$KREG_K8S_VERSION $KREG_PROTOBUF_VERSION $GOV $(hashof "$CLUSTER_DIR/go/kreg-k8s/main.go")"
  if stamp_ok kreg-k8s "$want"; then log "kreg-k8s $KREG_K8S_VERSION already built, skipping"; return; fi
  local t; t=$(now)
  local d="$SRC/k8s"; mkdir -p "$d/cmd/kreg-k8s"
  log "resolving k8s.io/kubernetes@$KREG_K8S_VERSION"
  local info; info=$( (cd "$d" && go mod download -json "k8s.io/kubernetes@$KREG_K8S_VERSION") ) \
    || die "cannot download k8s.io/kubernetes@$KREG_K8S_VERSION from $GOPROXY"
  local gomod dir commit
  gomod=$(jq -r .GoMod <<<"$info"); dir=$(jq -r .Dir <<<"$info")
  commit=$(jq -r '.Origin.Hash // empty' <<<"$info"); commit=${commit:-0000000000000000000000000000000000000000}
  echo "$dir" > "$d/k8s-dir"
  cp "$CLUSTER_DIR/go/kreg-k8s/main.go" "$d/cmd/kreg-k8s/main.go"
  local sv="v0.${KREG_K8S_VERSION#v1.}"
  {
    echo "module kreg.invalid/k8sbuild"; echo; echo "go 1.25.0"; echo; echo "godebug default=go1.25"; echo
    echo "require k8s.io/kubernetes $KREG_K8S_VERSION"; echo
    # Go 1.26 + protobuf < 1.36.12 disables linker dead-code elimination (+20-60 % binary size); upstream
    # release-1.35 picked the fix after v1.35.4, so pin it here (MVS only moves it up).
    echo "require google.golang.org/protobuf $KREG_PROTOBUF_VERSION"; echo
    # one replace per staging module, generated from the pinned go.mod
    sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#replace \1 => \1 '"$sv"'#p' "$gomod"
  } > "$d/go.mod"
  local n; n=$(grep -c '^replace' "$d/go.mod"); [ "$n" -gt 20 ] || die "generated only $n staging replaces from $gomod"
  log "wrapper module: $n staging replaces -> $sv"
  phase "k8s: resolve wrapper" "$(since "$t")"; t=$(now)
  (cd "$d" && go list -deps ./cmd/kreg-k8s >/dev/null) || die "module download for the k8s wrapper failed"
  phase "k8s: module download" "$(since "$t")"; t=$(now)
  local bd; bd=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KREG_K8S_VERSION -X $p.gitMajor=$MAJ -X $p.gitMinor=$MIN -X $p.gitCommit=$commit -X $p.gitTreeState=clean -X $p.buildDate=$bd"
  done
  echo "$ld" > "$K8S_LDFLAGS_FILE"
  log "compiling kreg-k8s (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) with -p $P"
  (cd "$d" && go build -p "$P" -trimpath -ldflags "$ld" -o "$BIN/kreg-k8s.new" ./cmd/kreg-k8s) || die "go build of kreg-k8s failed"
  mv "$BIN/kreg-k8s.new" "$BIN/kreg-k8s"
  for c in $COMPONENTS; do ln -sfn kreg-k8s "$BIN/$c"; done
  echo "$want" > "$BIN/.stamp-kreg-k8s"
  phase "k8s: compile+link" "$(since "$t")"
}

# ---------------------------------------------------------------- etcd (own module)
build_etcd() {
  local want; want="$KREG_ETCD_VERSION $GOV"
  if stamp_ok etcd "$want"; then log "etcd $KREG_ETCD_VERSION already built, skipping"; return; fi
  local t; t=$(now); local d="$SRC/etcd"; mkdir -p "$d"
  cat > "$d/go.mod" <<EOM
module kreg.invalid/etcdbuild

go 1.26.0

require go.etcd.io/etcd/server/v3 $KREG_ETCD_VERSION
EOM
  cat > "$d/main.go" <<'EOM'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOM
  (cd "$d" && go list -deps . >/dev/null) || die "module download for etcd $KREG_ETCD_VERSION failed"
  phase "etcd: module download" "$(since "$t")"; t=$(now)
  (cd "$d" && go build -p "$P" -trimpath -ldflags "-s -w" -o "$BIN/etcd.new" .) || die "go build of etcd failed"
  mv "$BIN/etcd.new" "$BIN/etcd"; echo "$want" > "$BIN/.stamp-etcd"
  phase "etcd: compile+link" "$(since "$t")"
}

# ---------------------------------------------------------------- CoreDNS (own module, trimmed plugin set)
COREDNS_PLUGINS="errors log health ready kubernetes loadbalance cache loop reload forward hosts metrics whoami"
build_coredns() {
  local want; want="$KREG_COREDNS_VERSION $GOV $COREDNS_PLUGINS"
  if stamp_ok coredns "$want"; then log "coredns $KREG_COREDNS_VERSION already built, skipping"; return; fi
  local t; t=$(now); local d="$SRC/coredns"; mkdir -p "$d"
  cat > "$d/go.mod" <<EOM
module kreg.invalid/corednsbuild

go 1.25.0

require github.com/coredns/coredns $KREG_COREDNS_VERSION
EOM
  {
    echo 'package main'; echo; echo 'import ('
    echo '	_ "github.com/coredns/coredns/core/dnsserver"'
    for p in $COREDNS_PLUGINS; do echo "	_ \"github.com/coredns/coredns/plugin/$p\""; done
    echo '	"github.com/coredns/coredns/coremain"'; echo ')'; echo
    echo 'func main() { coremain.Run() }'
  } > "$d/main.go"
  (cd "$d" && go list -deps . >/dev/null) || die "module download for coredns $KREG_COREDNS_VERSION failed"
  phase "coredns: module download" "$(since "$t")"; t=$(now)
  (cd "$d" && go build -p "$P" -trimpath -ldflags "-s -w" -o "$BIN/coredns.new" .) || die "go build of coredns failed"
  mv "$BIN/coredns.new" "$BIN/coredns"; echo "$want" > "$BIN/.stamp-coredns"
  phase "coredns: compile+link" "$(since "$t")"
}

# ---------------------------------------------------------------- pause (static C)
build_pause() {
  local kdir; kdir=$(cat "$SRC/k8s/k8s-dir" 2>/dev/null || true)
  [ -f "$kdir/build/pause/linux/pause.c" ] || die "pause.c not found in the k8s module ($kdir); run the k8s phase first"
  local want; want="$KREG_K8S_VERSION $(hashof "$kdir/build/pause/linux/pause.c")"
  if stamp_ok pause "$want"; then log "pause already built, skipping"; return; fi
  local t; t=$(now)
  gcc -Os -Wall -Werror -static -DVERSION="$KREG_K8S_VERSION-kreg" -o "$BIN/pause" "$kdir/build/pause/linux/pause.c" \
    || die "gcc -static pause.c failed (need libc6-dev for static glibc)"
  strip "$BIN/pause" 2>/dev/null || true
  echo "$want" > "$BIN/.stamp-pause"
  phase "pause: gcc -static" "$(since "$t")"
}

# ---------------------------------------------------------------- local-path provisioner (k8s wrapper module)
build_provisioner() {
  local want; want="$KREG_K8S_VERSION $GOV $(hashof "$CLUSTER_DIR/go/local-path-provisioner/main.go")"
  if stamp_ok kreg-local-path-provisioner "$want"; then log "provisioner already built, skipping"; return; fi
  local t; t=$(now); local d="$SRC/k8s"
  [ -f "$d/go.mod" ] || die "k8s wrapper module missing; run the k8s phase first"
  mkdir -p "$d/cmd/local-path-provisioner"
  cp "$CLUSTER_DIR/go/local-path-provisioner/main.go" "$d/cmd/local-path-provisioner/main.go"
  (cd "$d" && go build -p "$P" -trimpath -ldflags "-s -w" -o "$BIN/kreg-local-path-provisioner.new" ./cmd/local-path-provisioner) \
    || die "go build of the local-path provisioner failed"
  mv "$BIN/kreg-local-path-provisioner.new" "$BIN/kreg-local-path-provisioner"
  echo "$want" > "$BIN/.stamp-kreg-local-path-provisioner"
  phase "provisioner: compile+link" "$(since "$t")"
}

# ---------------------------------------------------------------- local image registry (distribution)
build_registry() {
  local want; want="$KREG_REGISTRY_VERSION $GOV"
  if stamp_ok registry "$want"; then log "registry already built, skipping"; return; fi
  local t; t=$(now); local d; d=$(mktemp -d)
  GOBIN="$d" go install -p "$P" -trimpath -ldflags "-s -w" "github.com/distribution/distribution/v3/cmd/registry@$KREG_REGISTRY_VERSION" \
    || die "go install of the registry (distribution $KREG_REGISTRY_VERSION) failed"
  mv "$d/registry" "$BIN/registry"; rm -rf "$d"
  echo "$want" > "$BIN/.stamp-registry"
  phase "registry: compile+link" "$(since "$t")"
}

log "kreg cluster build: k8s $KREG_K8S_VERSION, etcd $KREG_ETCD_VERSION, coredns $KREG_COREDNS_VERSION, $GOV, cache $CACHE"
# ---------------------------------------------------------------- metrics-server (go install of the tagged module)
build_metrics_server() {
  local want; want="$KREG_METRICS_SERVER_VERSION $GOV"
  if stamp_ok metrics-server "$want"; then log "metrics-server $KREG_METRICS_SERVER_VERSION already built, skipping"; return; fi
  local t; t=$(now)
  # `go install module@version` builds the module's own go.mod; -mod=mod does not apply to it.
  (GOFLAGS=-buildvcs=false GOBIN="$BIN/.metrics-server.new" go install -trimpath -ldflags "-s -w"     "sigs.k8s.io/metrics-server/cmd/metrics-server@$KREG_METRICS_SERVER_VERSION") || die "go install of metrics-server $KREG_METRICS_SERVER_VERSION failed"
  mv "$BIN/.metrics-server.new/metrics-server" "$BIN/metrics-server"; rmdir "$BIN/.metrics-server.new"
  echo "$want" > "$BIN/.stamp-metrics-server"
  phase "metrics-server: download+compile" "$(since "$t")"
}

build_k8s
build_pause
build_etcd
build_coredns
build_provisioner
build_registry
build_metrics_server
echo "---- build summary ($KREG_K8S_VERSION)"
for l in "${phase_times[@]}"; do echo "  $l"; done
echo "  total                        $(since "$T0")s"
echo "---- disk use"
du -sh "$BIN" "$GOCACHE" "$GOMODCACHE" "$SRC" 2>/dev/null | sed 's/^/  /'
ls -la "$BIN" | sed 's/^/  /'
