#!/usr/bin/env bash
# cluster.sh: a real single-node Kubernetes cluster on this machine, for the
# end-to-end tests (make e2e-cluster, make test-e2e). etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kubelet, with containerd and
# runc running real Pods. Everything listens on 127.0.0.1 only.
#
#   cluster.sh build             build kubelet, kube-controller-manager and
#                                kube-scheduler once (cached, version-checked)
#   cluster.sh up                build if needed, then start the cluster
#   cluster.sh down              stop it and remove what it left on the host
#   cluster.sh status            say whether it runs, with its KUBECONFIG
#   cluster.sh load-image IMAGE  copy IMAGE from the container engine into
#                                the cluster's containerd (no registry)
#
# Where the binaries come from, all built from the Go module proxy:
#   - kube-apiserver, etcd and kubectl: the envtest control plane that
#     `make envtest` (hack/setup-envtest.sh) builds into setup-envtest's store;
#   - kubelet, kube-controller-manager and kube-scheduler: built here the same
#     way, in a scratch module that requires k8s.io/kubernetes and replaces its
#     staging modules with their published v0.Y.Z releases;
#   - the sandbox ("pause") image: hack/e2e/pause, a static Go binary in an
#     image FROM scratch built with CONTAINER_TOOL;
#   - containerd, runc and the CNI plugins: Debian's packages, installed with
#     hack/apt-install.sh when missing.
#
# The settings this kind of machine needs (no CAP_SYS_RESOURCE, cgroup v1, no
# systemd, no route off the machine) and why:
#   - containerd `restrict_oom_score_adj = true`: runc cannot set the pause
#     container's oom_score_adj below our own without CAP_SYS_RESOURCE;
#   - kubelet `failCgroupV1: false`, `cgroupDriver: cgroupfs`;
#   - node name `localhost` (--hostname-override) and kube-apiserver
#     --kubelet-preferred-address-types=Hostname: the kubelet refuses a
#     loopback node IP, and the apiserver must reach it on 127.0.0.1:10250;
#   - kube-apiserver --endpoint-reconciler-type=none: it refuses to advertise
#     127.0.0.1 through the `kubernetes` Service;
#   - no kube-proxy and no Service routing: Pods that talk to the apiserver run
#     with hostNetwork and KUBERNETES_SERVICE_HOST=127.0.0.1,
#     KUBERNETES_SERVICE_PORT=$E2E_APISERVER_PORT;
#   - a bridge CNI (rekeybr0, 10.244.0.0/24, no masquerade, no default route)
#     only so that the node is Ready; the tests' Pods use hostNetwork.
#
# The kubelet and containerd also use host paths no flag moves
# (/var/lib/kubelet/device-plugins, /var/log/containers, /var/log/pods,
# /run/containerd/{s,fifo}) and the cgroups kubepods and k8s.io, so one such
# cluster runs per machine: `up` refuses while another runs, and refuses to
# start where a containerd or kubelet of the machine's own uses those paths.
# `down` stops only the processes `up` started (by their recorded process
# ids, and the containerd shims of this cluster's containerd), unmounts what
# is mounted under the run directory, and removes the host paths only when
# `up` created them.
#
# Environment:
#   E2E_K8S_VERSION      Kubernetes version (default: ENVTEST_K8S_VERSION, else 1.37.2)
#   E2E_CACHE_DIR        builds (default ${XDG_CACHE_HOME:-$HOME/.cache}/rekey/e2e-cluster)
#   E2E_CLUSTER_DIR      the running cluster's files: certificates, kubeconfigs,
#                        etcd data, logs (default $E2E_CACHE_DIR/run);
#                        $E2E_CLUSTER_DIR/admin.kubeconfig is the admin's kubeconfig
#   E2E_APISERVER_PORT   kube-apiserver's port on 127.0.0.1 (default 16443); the
#                        other ports: etcd 23790 and 23800, kubelet 10250 and
#                        10248, kube-controller-manager 20257, kube-scheduler 20259
#   SETUP_ENVTEST, ENVTEST_BIN_DIR   where the envtest control plane is (as for
#                        hack/setup-envtest.sh)
#   CONTAINER_TOOL       builds the pause image and saves images for load-image
#                        (default hack/container-tool.sh: docker, else podman)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
V="${E2E_K8S_VERSION:-${ENVTEST_K8S_VERSION:-1.37.2}}"
CACHE="${E2E_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey/e2e-cluster}"
D="${E2E_CLUSTER_DIR:-$CACHE/run}"
BIN="$CACHE/bin-$V"
SETUP_ENVTEST="${SETUP_ENVTEST:-$ROOT/bin/setup-envtest}"
CONTAINER_TOOL="${CONTAINER_TOOL:-$ROOT/hack/container-tool.sh}"
# A relative path (the Makefile's ./hack/container-tool.sh) is the checkout's.
[[ $CONTAINER_TOOL == */* && $CONTAINER_TOOL != /* ]] && CONTAINER_TOOL="$ROOT/$CONTAINER_TOOL"
APISERVER_PORT="${E2E_APISERVER_PORT:-16443}"
ETCD_PORT=23790 ETCD_PEER_PORT=23800 KUBELET_PORT=10250 KUBELET_HEALTHZ_PORT=10248 KCM_PORT=20257 SCHED_PORT=20259
PAUSE_IMAGE=localhost/rekey-e2e/pause:1
BRIDGE=rekeybr0
# The machine-wide record of the cluster that runs (its run directory), and
# the lock up and down take.
OWNER=/run/rekey-e2e-cluster
LOCK=/run/lock/rekey-e2e-cluster.lock
# Host paths the kubelet and containerd create outside the run directory.
HOST_PATHS=(/var/lib/kubelet /var/log/pods /var/log/containers /run/containerd)
STORE_ARGS=()
[[ -n "${ENVTEST_BIN_DIR:-}" ]] && STORE_ARGS=(--bin-dir "$ENVTEST_BIN_DIR")

T0=$(date +%s%3N)
log() { printf '[e2e-cluster %5.1fs] %s\n' "$(( $(date +%s%3N) - T0 ))e-3" "$*" >&2; }
die() { printf '[e2e-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $D == /*/* && $D != *..* ]] || die "E2E_CLUSTER_DIR must be an absolute path below a directory, got '$D'"

IFS=. read -r K8S_MAJOR K8S_MINOR K8S_PATCH <<<"$V"
[[ -n "$K8S_MAJOR" && -n "$K8S_MINOR" && -n "$K8S_PATCH" ]] || die "E2E_K8S_VERSION must be X.Y.Z, got '$V'"

# --- build -------------------------------------------------------------------

# check_bin DIR: succeeds when DIR holds the three binaries at version V.
check_bin() {
  local out b
  for b in kubelet kube-controller-manager kube-scheduler; do
    [[ -x "$1/$b" ]] || { log "missing $1/$b"; return 1; }
    out="$("$1/$b" --version 2>&1)" || { log "$b --version failed: $out"; return 1; }
    [[ "$out" == "Kubernetes v${V}" ]] || { log "$b reports '$out', want 'Kubernetes v${V}'"; return 1; }
  done
}

# build: kubelet, kube-controller-manager and kube-scheduler into $BIN, in a
# scratch module made as hack/setup-envtest.sh makes the kube-apiserver one
# (keep the two in step), unless $BIN already holds them at version V.
build() {
  if check_bin "$BIN" 2>/dev/null; then
    log "kubelet, kube-controller-manager, kube-scheduler v$V already built in $BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH"
  local mod="$CACHE/kubernetes-$V" out="$CACHE/bin-$V.tmp" start gomod goversion ts ldflags="" pkg c s
  start=$(date +%s)
  mkdir -p "$mod"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0
  log "resolving k8s.io/kubernetes v$V and its staging modules (v0.$K8S_MINOR.$K8S_PATCH)"
  gomod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$V" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')" \
    || die "could not download k8s.io/kubernetes@v$V from the Go module proxy"
  [[ -f "$gomod" ]] || die "k8s.io/kubernetes@v$V: go.mod not found in the module cache"
  goversion="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod" | head -n1)"
  {
    echo "module rekey.dev/e2e-kubernetes"
    echo
    echo "go $goversion"
    echo
    echo "require k8s.io/kubernetes v$V"
    echo
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*$#replace \1 => \1 '"v0.$K8S_MINOR.$K8S_PATCH"'#p' "$gomod"
  } >"$mod/go.mod"
  grep -q '^replace k8s.io/api ' "$mod/go.mod" || die "no staging replaces found in k8s.io/kubernetes@v$V's go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$mod" && go mod tidy >/dev/null 2>"$mod/tidy.log") || { cat "$mod/tidy.log" >&2; die "go mod tidy failed for the e2e kubernetes scratch module"; }
  ts="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$V -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$ts"
  done
  rm -rf "$out" && mkdir -p "$out"
  for c in kubelet kube-controller-manager kube-scheduler; do
    s=$(date +%s)
    log "building $c v$V (kubelet takes minutes on 2 cores; cached afterwards)"
    (cd "$mod" && go build -trimpath -ldflags "-s -w$ldflags" -o "$out/$c" "k8s.io/kubernetes/cmd/$c") \
      || die "building $c failed (see the go output above)"
    log "$c built in $(( $(date +%s) - s )) s"
  done
  check_bin "$out" || die "the built binaries in $out do not report v$V"
  rm -rf "$BIN" && mv "$out" "$BIN"
  log "built in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s into $BIN"
}

# envtest_dir: the envtest control plane's directory (kube-apiserver, etcd, kubectl).
envtest_dir() {
  local e
  [[ -x "$SETUP_ENVTEST" ]] || die "setup-envtest not found at $SETUP_ENVTEST: run 'make envtest' (or set SETUP_ENVTEST)"
  e="$("$SETUP_ENVTEST" "${STORE_ARGS[@]}" use -i -p path "$V" 2>/dev/null)" && [[ -x "$e/kube-apiserver" ]] \
    || die "no envtest control plane v$V in setup-envtest's store: run 'make envtest'"
  echo "$e"
}

# pause_image: the sandbox image as a docker-archive tarball, built once per
# version of hack/e2e/pause.
pause_image() {
  local sum tar dir
  sum="$(sha256sum "$HERE/pause/main.go" | cut -c1-12)"
  tar="$CACHE/pause-$sum.tar"
  [[ -s "$tar" ]] && { echo "$tar"; return 0; }
  dir="$CACHE/pause-build"
  rm -rf "$dir" && mkdir -p "$dir"
  log "building the pause image $PAUSE_IMAGE (hack/e2e/pause) with $CONTAINER_TOOL"
  (cd "$ROOT" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '-s -w' -o "$dir/pause" ./hack/e2e/pause) || die "building hack/e2e/pause failed"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/Containerfile"
  "$CONTAINER_TOOL" build -q -t "$PAUSE_IMAGE" -f "$dir/Containerfile" "$dir" >"$dir/build.log" 2>&1 ||
    { cat "$dir/build.log" >&2; die "building the pause image failed"; }
  "$CONTAINER_TOOL" save -o "$tar.tmp" "$PAUSE_IMAGE" >"$dir/build.log" 2>&1 ||
    { cat "$dir/build.log" >&2; die "saving the pause image failed"; }
  "$CONTAINER_TOOL" rmi "$PAUSE_IMAGE" >/dev/null 2>&1 || true
  mv "$tar.tmp" "$tar"
  rm -rf "$dir"
  echo "$tar"
}

# --- up ------------------------------------------------------------------------

# pid_alive NAME: the process recorded in $D/NAME.pid runs, and is the one
# up started: its command line names $D. A record that outlived its process
# (a reboot, a machine restored from a snapshot with /run in it) may hold the
# id of an unrelated process now, which must never be taken for ours, or
# killed by down.
pid_alive() {
  local pid
  [[ -f "$D/$1.pid" ]] || return 1
  pid="$(cat "$D/$1.pid")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$D/"
}
# any_alive: some process of the cluster in $D runs.
any_alive() {
  local s
  for s in containerd etcd apiserver kcm sched kubelet; do pid_alive "$s" && return 0; done
  return 1
}
KUBECTL=""
kubectl_() { "$KUBECTL" --kubeconfig "$D/admin.kubeconfig" "$@"; }

# preflight: root, Debian packages, nothing of the machine's own in the way,
# ports free.
preflight() {
  [[ $(id -u) -eq 0 ]] || die "run as root: the kubelet and containerd need it"
  local missing=() p rc=0
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || missing+=(containernetworking-plugins)
  command -v openssl >/dev/null || missing+=(openssl)
  if [[ ${#missing[@]} -gt 0 ]]; then
    "$ROOT/hack/apt-install.sh" "${missing[@]}" || rc=$?
    [[ $rc -eq 0 ]] || die "cannot install ${missing[*]} (hack/apt-install.sh exit $rc)"
  fi
  [[ -x /usr/lib/cni/bridge ]] || die "no /usr/lib/cni/bridge after installing containernetworking-plugins"
  if [[ -S /run/containerd/containerd.sock ]]; then
    die "a containerd of this machine's own runs (/run/containerd/containerd.sock): the test cluster's containerd would share /run/containerd with it"
  fi
  for p in "${HOST_PATHS[@]}"; do
    if [[ -e $p && ! -e $p/.rekey-e2e-cluster ]]; then
      [[ $p == /var/log/* && -z "$(ls -A "$p")" ]] && continue
      die "$p exists and was not made by this script: is a kubelet or containerd of this machine's own installed? Not starting the test cluster over it"
    fi
  done
  for p in "$APISERVER_PORT" $ETCD_PORT $ETCD_PEER_PORT $KUBELET_PORT $KUBELET_HEALTHZ_PORT $KCM_PORT $SCHED_PORT; do
    if [[ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]]; then
      die "port $p is in use: $(ss -Hltnp "sport = :$p" | head -n1)"
    fi
  done
}

pki() {
  local P="$D/pki"
  mkdir -p "$P" && cd "$P"
  key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
  key ca.key
  openssl req -x509 -new -key ca.key -subj "/CN=rekey-e2e-ca" -days 3 -out ca.crt 2>/dev/null
  key sa.key
  openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
  mk() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  mk apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\nextendedKeyUsage=serverAuth\n"
  mk admin "/O=system:masters/CN=rekey-e2e-admin" "extendedKeyUsage=clientAuth\n"
  mk node "/O=system:nodes/CN=system:node:localhost" "extendedKeyUsage=clientAuth\n"
  chmod 600 ./*.key
  local kc
  for kc in admin:admin kubelet:node; do
    cat >"$D/${kc%%:*}.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: rekey-e2e, cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: $P/ca.crt}}]
users: [{name: ${kc%%:*}, user: {client-certificate: $P/${kc#*:}.crt, client-key: $P/${kc#*:}.key}}]
contexts: [{name: rekey-e2e, context: {cluster: rekey-e2e, user: ${kc%%:*}}}]
current-context: rekey-e2e
EOF
    chmod 600 "$D/${kc%%:*}.kubeconfig"
  done
  cd - >/dev/null
}

containerd_config() {
  cat >"$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$D/containerd/containerd.sock"
[ttrpc]
  address = "$D/containerd/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$D/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni"
EOF
  cat >"$D/cni/10-rekey-e2e.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "rekey-e2e", "plugins": [{"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "dataDir": "$D/cni-ipam"}}]}
EOF
}

kubelet_config() {
  cat >"$D/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$D/containerd/containerd.sock
staticPodPath: $D/manifests
podLogsDir: $D/pod-logs
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $D/pki/ca.crt}}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
EOF
}

# start NAME CMD...: start a background process, logging to logs/NAME.log,
# and record its process id.
start() {
  local name=$1
  shift
  # 9>&-: the lock stays with this script, not with the cluster.
  "$@" >"$D/logs/$name.log" 2>&1 9>&- &
  echo $! >"$D/$name.pid"
}

# wait_for WHAT NAME TRIES CMD...: run CMD every 0.2 s until it succeeds,
# while process NAME runs.
wait_for() {
  local what=$1 name=$2 tries=$3 i logf="$D/logs/$2.log"
  shift 3
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    pid_alive "$name" || { what+=" ($name exited)"; break; }
    sleep 0.2
  done
  printf '[e2e-cluster] ERROR: %s; the end of %s:\n' "$what" "$logf" >&2
  tail -n 30 "$logf" >&2 || true
  return 1
}

up() {
  exec 9>"$LOCK"
  flock -w 600 9 || die "another 'cluster.sh up' or 'down' holds $LOCK"
  if [[ -f $OWNER ]]; then
    local other
    other="$(cat "$OWNER")"
    if [[ $other != "$D" ]]; then
      if (D=$other && any_alive); then
        die "a test cluster already runs from $other (E2E_CLUSTER_DIR=$other $0 down stops it)"
      fi
      # The record outlived its cluster (a reboot, or a machine restored
      # from a snapshot): none of its processes runs. Clean up what it may
      # have left on the host, as its own down would, then go on.
      log "$OWNER names $other, where nothing runs any more: cleaning it up first"
      (D=$other && down_locked) || die "could not clean up after the cluster that ran from $other"
      rm -f "$OWNER"
    fi
    if pid_alive apiserver && pid_alive kubelet && pid_alive containerd; then
      KUBECTL="$(envtest_dir)/kubectl"
      if kubectl_ get --raw /readyz >/dev/null 2>&1; then
        log "already up; KUBECONFIG=$D/admin.kubeconfig"
        return 0
      fi
    fi
    log "a previous cluster in $D did not stop cleanly: cleaning it up first"
    down_locked
  fi
  build
  local E
  E="$(envtest_dir)"
  KUBECTL="$E/kubectl"
  preflight
  local pause
  pause="$(pause_image)"

  log "starting in $D"
  echo "$D" >"$OWNER"
  # Anything below that fails leaves the cleanup to down (the trap).
  trap 'echo "[e2e-cluster] up failed: stopping what started (logs kept in $D/logs)" >&2; down_locked' ERR
  rm -rf "$D" && mkdir -p "$D"/{logs,etcd,manifests,kubelet,pod-logs,cni,cni-ipam,containerd/root,containerd/state,containerd/runc}
  : >"$D/created"
  local p
  for p in "${HOST_PATHS[@]}"; do
    [[ -e $p ]] || { mkdir -p "$p" && touch "$p/.rekey-e2e-cluster"; }
    [[ -e $p/.rekey-e2e-cluster ]] && echo "$p" >>"$D/created"
  done
  pki
  containerd_config
  kubelet_config

  start containerd containerd --config "$D/containerd/config.toml"
  start etcd "$E/etcd" --name rekey-e2e --data-dir "$D/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "rekey-e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
  local P="$D/pki"
  start apiserver "$E/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --endpoint-reconciler-type=none --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local --service-account-key-file="$P/sa.pub" \
    --service-account-signing-key-file="$P/sa.key" --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --kubelet-client-certificate="$P/admin.crt" --kubelet-client-key="$P/admin.key" --kubelet-preferred-address-types=Hostname
  wait_for "containerd did not start" containerd 150 test -S "$D/containerd/containerd.sock"
  ctr -a "$D/containerd/containerd.sock" -n k8s.io images import "$pause" >/dev/null
  log "containerd up, pause image imported"
  wait_for "kube-apiserver is not ready" apiserver 300 kubectl_ get --raw /readyz
  log "kube-apiserver ready on 127.0.0.1:$APISERVER_PORT"

  local common=(--kubeconfig="$D/admin.kubeconfig" --authentication-kubeconfig="$D/admin.kubeconfig"
    --authorization-kubeconfig="$D/admin.kubeconfig" --bind-address=127.0.0.1 --leader-elect=false)
  start kcm "$BIN/kube-controller-manager" "${common[@]}" --secure-port=$KCM_PORT \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --use-service-account-credentials=false --controllers='*,-nodeipam'
  start sched "$BIN/kube-scheduler" "${common[@]}" --secure-port=$SCHED_PORT
  start kubelet "$BIN/kubelet" --config="$D/kubelet-config.yaml" --kubeconfig="$D/kubelet.kubeconfig" \
    --root-dir="$D/kubelet" --cert-dir="$D/kubelet/pki" --hostname-override=localhost -v=2
  wait_for "the node did not register" kubelet 300 kubectl_ get node localhost
  kubectl_ wait --for=condition=Ready node/localhost --timeout=90s >/dev/null ||
    { tail -n 30 "$D/logs/kubelet.log" >&2; false; }
  log "node localhost Ready"
  # Pods need the namespace's default ServiceAccount (kube-controller-manager
  # makes it), and the scheduler places none while the node keeps its
  # not-ready taint.
  wait_for "no ServiceAccount default/default" kcm 300 kubectl_ get serviceaccount default
  wait_for "the node keeps a taint" kcm 300 \
    bash -c '[[ -z "$("$0" --kubeconfig "$1" get node localhost -o jsonpath="{.spec.taints}")" ]]' "$KUBECTL" "$D/admin.kubeconfig"
  trap - ERR
  log "up: KUBECONFIG=$D/admin.kubeconfig (kubectl: $KUBECTL)"
}

# --- down ----------------------------------------------------------------------

# stop NAME...: SIGTERM the recorded processes, wait for them, SIGKILL after
# 15 s.
stop() {
  local s p i
  for s in "$@"; do pid_alive "$s" && kill "$(cat "$D/$s.pid")" 2>/dev/null || true; done
  for s in "$@"; do
    [[ -f "$D/$s.pid" ]] || continue
    p=$(cat "$D/$s.pid")
    for ((i = 0; i < 75; i++)); do pid_alive "$s" || break; sleep 0.2; done
    ((i < 15)) || log "$s took $((i / 5)) s to stop"
    if pid_alive "$s"; then
      log "$s ($p) did not stop in 15 s: SIGKILL"
      kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$D/$s.pid"
  done
}

# shims: the process ids of the containerd shims of this cluster's containerd.
shims() {
  local f cmd
  for f in /proc/[0-9]*/cmdline; do
    cmd="$(tr '\0' ' ' 2>/dev/null <"$f")" || continue
    [[ $cmd == *containerd-shim* && $cmd == *"-address $D/containerd/containerd.sock "* ]] && basename "$(dirname "$f")"
  done
  true
}

down_locked() {
  trap - ERR
  set +e
  local A="$D/containerd/containerd.sock" t c p n
  if [[ -f "$D/apiserver.pid" && -z $KUBECTL ]]; then KUBECTL="$("$SETUP_ENVTEST" "${STORE_ARGS[@]}" use -i -p path "$V" 2>/dev/null)/kubectl"; fi
  if pid_alive apiserver && pid_alive kubelet; then
    # Let the kubelet stop the pods while it can.
    kubectl_ delete pods --all -A --grace-period=0 --force --wait=true --timeout=30s >/dev/null 2>&1
  fi
  stop kubelet sched kcm
  if pid_alive containerd; then
    for t in $(ctr -a "$A" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$A" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1; done
    for ((n = 0; n < 25; n++)); do
      [[ -z "$(ctr -a "$A" -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING"')" ]] && break
      sleep 0.2
    done
    for t in $(ctr -a "$A" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$A" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1; done
    for c in $(ctr -a "$A" -n k8s.io containers ls -q 2>/dev/null); do ctr -a "$A" -n k8s.io containers delete "$c" >/dev/null 2>&1; done
  fi
  stop containerd apiserver etcd
  # Shims of this cluster's containerd that outlived it.
  for p in $(shims); do kill -9 "$p" 2>/dev/null; done
  # Unmount what is mounted under the run directory, deepest first (pod
  # volumes, the pods' network namespaces, container root filesystems).
  findmnt -rn -o TARGET | awk -v d="$D/" 'index($0, d) == 1' | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  ip link del "$BRIDGE" 2>/dev/null
  # Host paths: only those up created.
  if [[ -f "$D/created" ]]; then
    while read -r p; do [[ -e $p/.rekey-e2e-cluster ]] && rm -rf "$p"; done <"$D/created"
  fi
  for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/unified/kubepods; do
    [[ -d $p ]] && find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # Keep the logs for a look after a failure; remove everything else.
  if [[ -d $D ]]; then
    find "$D" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null
  fi
  [[ -f $OWNER && "$(cat "$OWNER")" == "$D" ]] && rm -f "$OWNER"
  set -e
  leftovers
}

# leftovers: fail loudly when something of this cluster is still there.
leftovers() {
  local bad=() p s
  for s in containerd etcd apiserver kcm sched kubelet; do pid_alive "$s" && bad+=("process $s")
  done
  [[ -n "$(shims)" ]] && bad+=("containerd shims $(shims | tr '\n' ' ')")
  [[ -n "$(findmnt -rn -o TARGET | awk -v d="$D/" 'index($0, d) == 1')" ]] && bad+=("mounts under $D")
  ip link show "$BRIDGE" >/dev/null 2>&1 && bad+=("link $BRIDGE")
  for p in "${HOST_PATHS[@]}"; do [[ -e $p/.rekey-e2e-cluster ]] && bad+=("$p"); done
  if [[ ${#bad[@]} -gt 0 ]]; then
    printf '[e2e-cluster] ERROR: left behind: %s\n' "${bad[*]}" >&2
    return 1
  fi
  log "down: nothing left running or mounted (logs in $D/logs)"
}

down() {
  exec 9>"$LOCK"
  flock -w 600 9 || die "another 'cluster.sh up' or 'down' holds $LOCK"
  if [[ ! -d $D ]]; then
    log "no cluster in $D"
    return 0
  fi
  down_locked
}

status() {
  if [[ -f $OWNER ]]; then
    echo "a test cluster runs from $(cat "$OWNER")"
  fi
  local s
  for s in containerd etcd apiserver kcm sched kubelet; do
    if pid_alive "$s"; then echo "  $s: running ($(cat "$D/$s.pid"))"; else echo "  $s: not running"; fi
  done
  if pid_alive apiserver; then
    KUBECTL="$(envtest_dir)/kubectl"
    echo "KUBECONFIG=$D/admin.kubeconfig"
    kubectl_ get nodes 2>&1 | sed 's/^/  /'
  fi
}

# load_image IMAGE: copy IMAGE from the container engine into containerd's
# k8s.io namespace, where the kubelet finds it (imagePullPolicy: Never or
# IfNotPresent). A name without a registry, like rekey:latest, is also
# tagged as the kubelet spells it (docker.io/library/rekey:latest).
load_image() {
  local img=$1 tar A="$D/containerd/containerd.sock"
  pid_alive containerd || die "the cluster is not up (no containerd in $D)"
  mkdir -p "$D/images"
  tar="$D/images/image.tar"
  "$CONTAINER_TOOL" save -o "$tar" "$img" >"$D/images/save.log" 2>&1 || { cat "$D/images/save.log" >&2; die "$CONTAINER_TOOL save $img failed"; }
  ctr -a "$A" -n k8s.io images import "$tar" >/dev/null || die "ctr images import of $img failed"
  rm -f "$tar"
  local first=${img%%/*}
  if [[ $img != */* || ($first != *.* && $first != *:* && $first != localhost) ]]; then
    local full="docker.io/$img"
    [[ $img == */* ]] || full="docker.io/library/$img"
    [[ $full == *:* ]] || full+=":latest"
    ctr -a "$A" -n k8s.io images tag --force "localhost/${img}" "$full" >/dev/null 2>&1 ||
      ctr -a "$A" -n k8s.io images tag --force "$img" "$full" >/dev/null 2>&1 || true
  fi
  ctr -a "$A" -n k8s.io images ls -q | grep -qxF "$img" || ctr -a "$A" -n k8s.io images ls -q | grep -q "$img" ||
    die "after the import, containerd does not list $img"
  log "image $img loaded into the cluster's containerd"
}

case "${1:-}" in
build) build ;;
up) up ;;
down) down ;;
status) status ;;
load-image)
  [[ -n "${2:-}" ]] || die "usage: $0 load-image IMAGE"
  load_image "$2"
  ;;
*)
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
