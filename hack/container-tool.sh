#!/usr/bin/env bash
# container-tool.sh ARGS...: runs `ENGINE ARGS...` with the container engine of
# this machine, the Makefile's default CONTAINER_TOOL:
#   - docker, when its daemon answers;
#   - else podman, installed with runc from Debian's packages when missing,
#     run as `podman --runtime runc` (crun fails in some sandboxes) with
#     hack/containers.conf (CONTAINERS_CONF).
# CONTAINER_ENGINE=docker or CONTAINER_ENGINE=podman chooses one.
#
# container-tool.sh --ensure prints the engine it would use, installing podman
# if needed; it exits 3 when there is no engine and none can be installed
# (hack/apt-install.sh), which 'make test-image' reports as a skip.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

engine="${CONTAINER_ENGINE:-}"
if [[ -z $engine ]]; then
  if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    engine=docker
  else
    engine=podman
  fi
fi

case $engine in
docker) ;;
podman)
  if ! command -v podman >/dev/null 2>&1; then
    rc=0
    "$HERE/apt-install.sh" podman runc || rc=$?
    if [[ $rc -ne 0 ]]; then
      echo "[container-tool] no container engine: no docker daemon answers, and podman cannot be installed" >&2
      exit "$rc"
    fi
    if ! command -v podman >/dev/null 2>&1; then
      echo "[container-tool] podman is installed but not on PATH ($PATH)" >&2
      exit 1
    fi
  fi
  if ! command -v runc >/dev/null 2>&1 && ! "$HERE/apt-install.sh" runc; then
    echo "[container-tool] runc is not installed: podman runs with its default runtime" >&2
  fi
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
  ;;
*)
  echo "[container-tool] CONTAINER_ENGINE=$engine: docker or podman" >&2
  exit 2
  ;;
esac

if [[ ${1:-} == --ensure ]]; then
  echo "$engine"
  exit 0
fi
if [[ $engine == podman ]]; then
  if command -v runc >/dev/null 2>&1; then
    exec podman --runtime runc "$@"
  fi
  exec podman "$@"
fi
exec docker "$@"
