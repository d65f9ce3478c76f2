#!/usr/bin/env bash
# setup-envtest.sh builds the local Kubernetes control plane that envtest, the
# demo and the benchmarks run against, and installs it the kubebuilder way.
#
# setup-envtest cannot download release binaries on machines without internet
# access, so this script builds them from the Go module proxy:
#   - kube-apiserver and kubectl from k8s.io/kubernetes, in a scratch module that
#     replaces every staging module (k8s.io/api, k8s.io/apiserver, ...) with its
#     published v0.Y.Z release, stamped with the Kubernetes version;
#   - etcd from a three-line main that calls go.etcd.io/etcd/server/v3/etcdmain.
# It then hands the three binaries to `setup-envtest sideload`, so that
#   KUBEBUILDER_ASSETS=$(setup-envtest use -i -p path $ENVTEST_K8S_VERSION)
# finds them exactly as it finds downloaded ones.
#
# It does nothing when the store already holds the right versions. It never
# downloads anything but Go modules.
#
# Environment:
#   ENVTEST_K8S_VERSION    Kubernetes version to build (default 1.37.2)
#   ETCD_VERSION           etcd version to build (default 3.6.16)
#   SETUP_ENVTEST          path to the setup-envtest binary (default ./bin/setup-envtest)
#   ENVTEST_BIN_DIR        setup-envtest store (default: setup-envtest's own default,
#                          shared by every clone on this machine)
#   ENVTEST_BUILD_DIR      scratch modules and build outputs
#                          (default ${XDG_CACHE_HOME:-$HOME/.cache}/rekey/envtest-build)
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SETUP_ENVTEST="${SETUP_ENVTEST:-$ROOT/bin/setup-envtest}"
BUILD_DIR="${ENVTEST_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey/envtest-build}"
STORE_ARGS=()
if [[ -n "${ENVTEST_BIN_DIR:-}" ]]; then
  STORE_ARGS=(--bin-dir "$ENVTEST_BIN_DIR")
fi

log() { printf '[setup-envtest] %s\n' "$*" >&2; }
die() { printf '[setup-envtest] ERROR: %s\n' "$*" >&2; exit 1; }

IFS=. read -r K8S_MAJOR K8S_MINOR K8S_PATCH <<<"$K8S_VERSION"
[[ -n "$K8S_MAJOR" && -n "$K8S_MINOR" && -n "$K8S_PATCH" ]] || die "ENVTEST_K8S_VERSION must be X.Y.Z, got '$K8S_VERSION'"
STAGING_VERSION="v0.${K8S_MINOR}.${K8S_PATCH}"

[[ -x "$SETUP_ENVTEST" ]] || die "setup-envtest not found at $SETUP_ENVTEST (run 'make setup-envtest' or set SETUP_ENVTEST)"
command -v go >/dev/null || die "go is not on PATH"

# check_assets DIR: succeeds when DIR holds the three binaries at the expected versions.
check_assets() {
  local dir="$1" out
  for b in kube-apiserver etcd kubectl; do
    [[ -x "$dir/$b" ]] || { log "missing $dir/$b"; return 1; }
  done
  out="$("$dir/kube-apiserver" --version 2>&1)" || { log "kube-apiserver --version failed: $out"; return 1; }
  [[ "$out" == "Kubernetes v${K8S_VERSION}" ]] || { log "kube-apiserver reports '$out', want 'Kubernetes v${K8S_VERSION}'"; return 1; }
  out="$("$dir/kubectl" version --client 2>&1)" || { log "kubectl version failed: $out"; return 1; }
  [[ "$out" == *"Client Version: v${K8S_VERSION}"* ]] || { log "kubectl reports '$out', want v${K8S_VERSION}"; return 1; }
  out="$("$dir/etcd" --version 2>&1)" || { log "etcd --version failed: $out"; return 1; }
  [[ "$out" == *"etcd Version: ${ETCD_VERSION}"* ]] || { log "etcd reports '$out', want ${ETCD_VERSION}"; return 1; }
}

if existing="$("$SETUP_ENVTEST" "${STORE_ARGS[@]}" use -i -p path "$K8S_VERSION" 2>/dev/null)" && [[ -n "$existing" ]]; then
  if check_assets "$existing"; then
    log "control plane v${K8S_VERSION} (etcd ${ETCD_VERSION}) already installed at $existing; nothing to do"
    exit 0
  fi
  log "installed assets at $existing are incomplete or of another version; rebuilding"
fi

mkdir -p "$BUILD_DIR"
OUT="$BUILD_DIR/out-${K8S_VERSION}-etcd${ETCD_VERSION}"
mkdir -p "$OUT"
start=$(date +%s)
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

# --- kube-apiserver and kubectl -------------------------------------------
build_kubernetes() {
  local mod="$BUILD_DIR/kubernetes-${K8S_VERSION}"
  mkdir -p "$mod"
  log "resolving k8s.io/kubernetes v${K8S_VERSION} and its staging modules (${STAGING_VERSION})"
  local gomod
  gomod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')" \
    || die "could not download k8s.io/kubernetes@v${K8S_VERSION} from the Go module proxy"
  [[ -f "$gomod" ]] || die "k8s.io/kubernetes@v${K8S_VERSION}: go.mod not found in the module cache"
  local goversion
  goversion="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod" | head -n1)"
  {
    echo "module rekey.dev/envtest-kubernetes"
    echo
    echo "go ${goversion}"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    # Every "k8s.io/x => ./staging/src/k8s.io/x" replace becomes "k8s.io/x => k8s.io/x v0.Y.Z".
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*$#replace \1 => \1 '"${STAGING_VERSION}"'#p' "$gomod"
  } >"$mod/go.mod"
  grep -q '^replace k8s.io/api ' "$mod/go.mod" || die "no staging replaces found in k8s.io/kubernetes@v${K8S_VERSION}'s go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$mod" && go mod tidy >/dev/null 2>"$mod/tidy.log") || { cat "$mod/tidy.log" >&2; die "go mod tidy failed for the kubernetes scratch module"; }
  local ldflags=""
  local ts
  ts="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=v${K8S_VERSION} -X ${pkg}.gitMajor=${K8S_MAJOR} -X ${pkg}.gitMinor=${K8S_MINOR}"
    ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${ts}"
  done
  log "building kube-apiserver v${K8S_VERSION} (about 8 minutes cold on 2 cores; cached afterwards)"
  (cd "$mod" && go build -trimpath -ldflags "-s -w${ldflags}" -o "$OUT/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) \
    || die "building kube-apiserver failed (see the go output above)"
  log "building kubectl v${K8S_VERSION}"
  (cd "$mod" && go build -trimpath -ldflags "-s -w${ldflags}" -o "$OUT/kubectl" k8s.io/kubernetes/cmd/kubectl) \
    || die "building kubectl failed (see the go output above)"
}

# --- etcd ------------------------------------------------------------------
build_etcd() {
  local mod="$BUILD_DIR/etcd-${ETCD_VERSION}"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<GOMOD
module rekey.dev/envtest-etcd

go 1.24

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
GOMOD
  cat >"$mod/main.go" <<'GO'
// Command etcd is etcd's own server main, built from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$mod" && go mod tidy >/dev/null 2>"$mod/tidy.log") || { cat "$mod/tidy.log" >&2; die "go mod tidy failed for the etcd scratch module"; }
  log "building etcd v${ETCD_VERSION}"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" .) || die "building etcd failed (see the go output above)"
}

build_etcd
build_kubernetes
check_assets "$OUT" || die "the built binaries in $OUT do not report the expected versions"

log "sideloading into setup-envtest's store as ${K8S_VERSION}"
tarball="$BUILD_DIR/envtest-${K8S_VERSION}.tar.gz"
# -h: sideload skips symlinks, so dereference.
tar -C "$OUT" -czhf "$tarball" kube-apiserver etcd kubectl
"$SETUP_ENVTEST" "${STORE_ARGS[@]}" sideload "$K8S_VERSION" <"$tarball" || die "setup-envtest sideload failed"
path="$("$SETUP_ENVTEST" "${STORE_ARGS[@]}" use -i -p path "$K8S_VERSION")" || die "setup-envtest cannot find the version it just sideloaded"
check_assets "$path" || die "sideloaded assets at $path fail the version check"
log "done in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s; KUBEBUILDER_ASSETS=$path"
