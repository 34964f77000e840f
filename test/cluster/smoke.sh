#!/usr/bin/env bash
# Smoke test of the kreg cluster: exercises what a kind user relies on, with a tiny offline image built here
# from Debian's busybox-static (no registry, no Docker). Fails loudly; always deletes its namespace.
set -Eeuo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || die "smoke.sh must run as root"
[ -f "$KUBECONFIG_OUT" ] || die "no kubeconfig at $KUBECONFIG_OUT: run test/cluster/up.sh first"
[ -S "$CTR_SOCK" ] || die "cluster containerd socket $CTR_SOCK missing: run test/cluster/up.sh first"
kctl get --raw=/readyz >/dev/null 2>&1 || die "apiserver not ready: run test/cluster/up.sh"
[ -x /bin/busybox ] || die "/bin/busybox missing: run test/cluster/install-deps.sh (busybox-static)"
T0=$(now)
NS="kreg-smoke-$$"
IMAGE="localhost/kreg-smoke:v1"
PF_PID=""
PASS=0
step() { echo "[$(date +%H:%M:%S)] ---- $*"; }
ok() { PASS=$((PASS+1)); echo "    OK: $*"; }
diag() {
  echo "---- diagnostics (namespace $NS)" >&2
  kctl -n "$NS" get all,pvc,pv -o wide >&2 2>&1 || true
  kctl -n "$NS" get events --sort-by=.lastTimestamp 2>&1 | tail -20 >&2 || true
  kctl -n kube-system get pods -o wide >&2 2>&1 || true
}
failed() { echo "SMOKE FAILED: $*" >&2; diag; exit 1; }
cleanup() {
  local rc=$?
  [ "$rc" -ne 0 ] && echo "SMOKE FAILED (exit $rc) after $PASS passed checks" >&2
  [ -n "$PF_PID" ] && kill "$PF_PID" 2>/dev/null || true
  if kctl get ns "$NS" >/dev/null 2>&1; then
    kctl delete ns "$NS" --wait=true --timeout=90s >/dev/null 2>&1 || echo "WARNING: namespace $NS not fully deleted" >&2
  fi
  # the provisioner deletes released PVs (and their directories) asynchronously
  local i; for i in $(seq 1 30); do
    [ -z "$(kctl get pv -o jsonpath="{range .items[?(@.spec.claimRef.namespace==\"$NS\")]}{.metadata.name}{end}" 2>/dev/null)" ] && break
    sleep 0.5
  done
  exit $rc
}
trap cleanup EXIT

# ------------------------------------------------------------ image (busybox-static, imported offline)
# NB: Debian busybox-static 1.35 wget segfaults with -T <timeout>; use the timeout applet instead.
step "build + import offline image $IMAGE"
IMG="$CACHE/images"; mkdir -p "$IMG"
if [ ! -f "$IMG/smoke.tar" ] || [ /bin/busybox -nt "$IMG/smoke.tar" ]; then
  r=$(mktemp -d); mkdir -p "$r/bin" "$r/www" "$r/tmp" "$r/etc"; chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' > "$r/etc/passwd"; echo 'root:x:0:' > "$r/etc/group"
  mkimage "$IMAGE" "$r" '["/bin/sh"]' "$IMG/smoke.tar"; rm -rf "$r"
fi
ctr_k8s images import "$IMG/smoke.tar" >/dev/null || failed "ctr import of $IMG/smoke.tar failed"
ok "image imported"

# ------------------------------------------------------------ workloads
step "create namespace $NS: Deployment web (2 replicas) + Service, client pod, PVC + writer pod"
kctl create ns "$NS" >/dev/null
for i in $(seq 1 60); do kctl -n "$NS" get sa default >/dev/null 2>&1 && break; sleep 0.5; done
kctl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: $IMAGE
        imagePullPolicy: Never
        command: [/bin/sh, -c, 'echo smoke-log-marker-\$(hostname); mkdir -p /www; echo "hello from \$(hostname)" > /www/index.html; exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: $IMAGE, imagePullPolicy: Never, command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 1; done']}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: $IMAGE
    imagePullPolicy: Never
    command: [/bin/sh, -c, 'echo persisted-by-writer > /data/hello.txt && trap "exit 0" TERM; while :; do sleep 1; done']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF

step "Deployment becomes Ready"
kctl -n "$NS" rollout status deploy/web --timeout=120s || failed "deployment web not Ready"
kctl -n "$NS" wait --for=condition=Ready pod/client --timeout=90s >/dev/null || failed "client pod not Ready"
ok "deployment web 2/2 ready, client pod ready"

SVC_IP=$(kctl -n "$NS" get svc web -o jsonpath='{.spec.clusterIP}')
WEB_PODS=$(kctl -n "$NS" get pods -l app=web -o jsonpath='{.items[*].metadata.name}')
WEB_POD=${WEB_PODS%% *}
WEB_IP=$(kctl -n "$NS" get pod "$WEB_POD" -o jsonpath='{.status.podIP}')
retry() { # tries cmd... ; succeeds if cmd output matches $EXPECT
  local n=$1; shift; local out=""
  for i in $(seq 1 "$n"); do
    out=$("$@" 2>&1) && grep -q -- "$EXPECT" <<<"$out" && { echo "$out"; return 0; }
    sleep 1
  done
  echo "$out"; return 1
}

step "kubectl exec + pod-to-pod traffic (client -> $WEB_POD at $WEB_IP:8080)"
out=$(EXPECT="hello from $WEB_POD" retry 10 kctl -n "$NS" exec client -- timeout 5 wget -qO- "http://$WEB_IP:8080/") \
  || failed "pod-to-pod: client could not fetch http://$WEB_IP:8080/: $out"
ok "pod-to-pod: '$out'"

step "Service via ClusterIP from another pod (kube-proxy): http://$SVC_IP/"
out=$(EXPECT="hello from web-" retry 15 kctl -n "$NS" exec client -- timeout 5 wget -qO- "http://$SVC_IP/") \
  || failed "ClusterIP: client could not fetch http://$SVC_IP/: $out"
ok "ClusterIP: '$out'"
# both endpoints should answer through the service eventually (load-balancing)
seen=""
for i in $(seq 1 30); do
  o=$(kctl -n "$NS" exec client -- timeout 5 wget -qO- "http://$SVC_IP/" 2>/dev/null || true)
  case "$seen" in *"$o"*) ;; *) seen+="$o;";; esac
  [ "$(tr ';' '\n' <<<"$seen" | grep -c 'hello from')" -ge 2 ] && break
done
[ "$(tr ';' '\n' <<<"$seen" | grep -c 'hello from')" -ge 2 ] || failed "ClusterIP only ever reached one backend: $seen"
ok "ClusterIP balanced over both endpoints"

step "DNS: web.$NS.svc.cluster.local resolves in a pod (CoreDNS) and is reachable by name"
FQDN="web.$NS.svc.cluster.local"
out=$(EXPECT="$SVC_IP" retry 15 kctl -n "$NS" exec client -- nslookup "$FQDN") \
  || failed "DNS: nslookup $FQDN did not return $SVC_IP: $out"
ok "nslookup $FQDN -> $SVC_IP"
out=$(EXPECT="hello from web-" retry 10 kctl -n "$NS" exec client -- timeout 5 wget -qO- "http://web/") \
  || failed "DNS search path: wget http://web/ failed: $out"
ok "short name 'web' via search path: '$out'"
out=$(EXPECT="10.96.0.1" retry 5 kctl -n "$NS" exec client -- nslookup kubernetes.default.svc.cluster.local) \
  || failed "DNS: kubernetes.default did not resolve: $out"
ok "kubernetes.default.svc.cluster.local -> 10.96.0.1"

step "kubectl logs"
out=$(kctl -n "$NS" logs "$WEB_POD") || failed "kubectl logs $WEB_POD failed: $out"
grep -q "smoke-log-marker-$WEB_POD" <<<"$out" || failed "kubectl logs: marker not found in: $out"
ok "logs contain smoke-log-marker-$WEB_POD"
out=$(kctl -n "$NS" exec "$WEB_POD" -- cat /www/index.html) || failed "kubectl exec cat failed: $out"
[ "$out" = "hello from $WEB_POD" ] || failed "kubectl exec returned '$out'"
ok "kubectl exec: '$out'"

step "kubectl port-forward svc/web from the host"
PF_OUT=$(mktemp)
kctl -n "$NS" port-forward svc/web :80 > "$PF_OUT" 2>&1 &
PF_PID=$!
port=""
for i in $(seq 1 50); do
  port=$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\) .*/\1/p' "$PF_OUT" | head -1)
  [ -n "$port" ] && break; kill -0 "$PF_PID" 2>/dev/null || break; sleep 0.2
done
[ -n "$port" ] || failed "port-forward did not start: $(cat "$PF_OUT")"
out=$(EXPECT="hello from web-" retry 10 curl -fsS --max-time 5 "http://127.0.0.1:$port/") \
  || failed "port-forward: curl http://127.0.0.1:$port/ failed: $out ($(cat "$PF_OUT"))"
ok "port-forward 127.0.0.1:$port -> svc/web: '$out'"
kill "$PF_PID" 2>/dev/null || true; wait "$PF_PID" 2>/dev/null || true; PF_PID=""; rm -f "$PF_OUT"

step "PVC with the default StorageClass binds; a pod writes to it"
kctl -n "$NS" wait --for=condition=Ready pod/writer --timeout=90s >/dev/null || failed "writer pod not Ready"
phase=$(kctl -n "$NS" get pvc data -o jsonpath='{.status.phase}')
[ "$phase" = Bound ] || failed "PVC data is $phase, not Bound"
sc=$(kctl -n "$NS" get pvc data -o jsonpath='{.spec.storageClassName}')
out=$(kctl -n "$NS" exec writer -- cat /data/hello.txt) || failed "cannot read /data/hello.txt in writer: $out"
[ "$out" = persisted-by-writer ] || failed "unexpected volume content '$out'"
pv=$(kctl -n "$NS" get pvc data -o jsonpath='{.spec.volumeName}')
hostpath=$(kctl get pv "$pv" -o jsonpath='{.spec.hostPath.path}')
[ "$(cat "$hostpath/hello.txt" 2>/dev/null)" = persisted-by-writer ] || failed "file not found on the host at $hostpath/hello.txt"
ok "PVC data Bound (class $sc) to $pv; pod wrote $hostpath/hello.txt"

step "cleanup"
kctl delete ns "$NS" --wait=true --timeout=90s >/dev/null || failed "namespace $NS deletion timed out"
for i in $(seq 1 40); do [ -d "$hostpath" ] || break; sleep 0.5; done
[ -d "$hostpath" ] && failed "provisioner did not delete $hostpath after the PVC was deleted"
ok "namespace deleted, PV directory removed by the provisioner"
echo "SMOKE PASSED: $PASS checks in $(since "$T0") s"
