#!/usr/bin/env bash
# test-e2e.sh is `make test-e2e`: the operator as a real Deployment in a real
# single-node cluster (hack/e2e/cluster.sh), installed from dist/install.yaml
# with the image built here.
#
#   1. builds the image (make docker-build IMG=$E2E_IMG) and renders the bundle
#      for it (make build-installer IMG=$E2E_IMG: dist/install.yaml);
#   2. starts the cluster, unless one runs already (make e2e-cluster), and
#      imports the image into its containerd;
#   3. runs the suite test/e2e (install, rotate, the key service for
#      workloads with a workload Pod decrypting through it, every uninstall
#      route keeps the keys, reinstall and rotate again, remove the keys on
#      purpose);
#   4. stops the cluster it started and checks that nothing is left behind
#      (E2E_KEEP_CLUSTER=1 leaves it running; a cluster that ran before is
#      left running).
#
# The suite also switches from the bundle to the chart (charts/rekey, with
# HELM, bin/helm by default) and uninstalls it with helm uninstall.
#
# It needs root and a container engine: CONTAINER_TOOL, by default
# hack/container-tool.sh (docker, else podman, installed from Debian's
# packages when missing). Like `make test-image`, it skips loudly only where
# there is no engine and none can be installed.
#
# Environment (the Makefile sets them): E2E_IMG, CONTAINER_TOOL, VERSION,
# HELM, SETUP_ENVTEST, E2E_K8S_VERSION, and cluster.sh's E2E_*; E2E_TEST_ARGS are
# more `go test` arguments (e.g. -run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CLUSTER="$ROOT/hack/e2e/cluster.sh"
E2E_IMG="${E2E_IMG:-localhost/rekey:e2e}"
# The workload of the key service's test: hack/e2e/workload (AWS SDK for Go v2).
WORKLOAD_IMG="${E2E_WORKLOAD_IMG:-localhost/rekey-e2e/workload:e2e}"
CONTAINER_TOOL="${CONTAINER_TOOL:-./hack/container-tool.sh}"
V="${E2E_K8S_VERSION:-1.37.2}"
CACHE="${E2E_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey/e2e-cluster}"
D="${E2E_CLUSTER_DIR:-$CACHE/run}"
t0=$(date +%s)
log() { printf '\n[test-e2e %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*" >&2; }

[[ $(id -u) -eq 0 ]] || { echo "make test-e2e: run as root (the test cluster's kubelet and containerd need it)" >&2; exit 1; }

if [[ $CONTAINER_TOOL == ./hack/container-tool.sh ]]; then
  rc=0
  engine=$(./hack/container-tool.sh --ensure) || rc=$?
  if [[ $rc -eq 3 ]]; then
    printf '\n%s\n%s\n%s\n\n' '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' \
      '!!! make test-e2e SKIPPED: no container engine, and none can be installed (see above)' \
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' >&2
    exit 0
  fi
  [[ $rc -eq 0 ]] || exit $rc
  log "container engine: $engine"
fi

log "the image $E2E_IMG (make docker-build) and dist/install.yaml for it (make build-installer)"
make --no-print-directory docker-build IMG="$E2E_IMG" ${VERSION:+VERSION="$VERSION"}
make --no-print-directory build-installer IMG="$E2E_IMG"
log "the workload image $WORKLOAD_IMG (hack/e2e/workload-image.sh)"
CONTAINER_TOOL="$CONTAINER_TOOL" ./hack/e2e/workload-image.sh "$WORKLOAD_IMG"

started=0
if [[ -f /run/rekey-e2e-cluster && "$(cat /run/rekey-e2e-cluster)" == "$D" && "$("$CLUSTER" status 2>/dev/null)" == *$'\nKUBECONFIG='* ]]; then
  log "using the test cluster that runs already in $D (left running afterwards)"
else
  started=1
fi
finish() {
  local rc=$?
  if [[ $started -eq 1 ]]; then
    if [[ ${E2E_KEEP_CLUSTER:-0} == 1 ]]; then
      log "E2E_KEEP_CLUSTER=1: the cluster keeps running; stop it with make e2e-cluster-down"
    else
      log "stopping the test cluster"
      "$CLUSTER" down || rc=1
    fi
  fi
  log "test-e2e $([[ $rc -eq 0 ]] && echo OK || echo FAILED) after $(( $(date +%s) - t0 )) s"
  exit $rc
}
trap finish EXIT
log "the test cluster"
"$CLUSTER" up
log "importing $E2E_IMG into the cluster's containerd"
"$CLUSTER" load-image "$E2E_IMG"
"$CLUSTER" load-image "$WORKLOAD_IMG"

envtest="$("${SETUP_ENVTEST:-$ROOT/bin/setup-envtest}" ${ENVTEST_BIN_DIR:+--bin-dir "$ENVTEST_BIN_DIR"} use -i -p path "$V")"
log "the suite: go test ./test/e2e"
rm -rf "$D/test"
# shellcheck disable=SC2086 # E2E_TEST_ARGS is a list of arguments
REKEY_E2E_KUBECONFIG="$D/admin.kubeconfig" \
  REKEY_E2E_KUBECTL="$envtest/kubectl" \
  REKEY_E2E_HELM="${HELM:-$ROOT/bin/helm}" \
  REKEY_E2E_IMAGE="$E2E_IMG" \
  REKEY_E2E_WORKLOAD_IMAGE="$WORKLOAD_IMG" \
  REKEY_E2E_APISERVER_PORT="${E2E_APISERVER_PORT:-16443}" \
  REKEY_E2E_DIR="$D/test" \
  go test ./test/e2e/ -count=1 -v -timeout 30m ${E2E_TEST_ARGS:-}
