#!/usr/bin/env bash
# workload-image.sh IMAGE: builds the image of hack/e2e/workload — a program
# that decrypts with the AWS SDK for Go v2's default configuration and
# nothing of rekey's — FROM scratch, as cluster.sh builds the pause image: a
# static binary, the numeric user 65532, no CA bundle (the Pod mounts the key
# service's). `make test-e2e` and `make demo-workload` build it, then load it
# with `cluster.sh load-image IMAGE`.
#
# Environment: CONTAINER_TOOL (default hack/container-tool.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
IMAGE=${1:?usage: workload-image.sh IMAGE}
CONTAINER_TOOL="${CONTAINER_TOOL:-$ROOT/hack/container-tool.sh}"
[[ $CONTAINER_TOOL == */* && $CONTAINER_TOOL != /* ]] && CONTAINER_TOOL="$ROOT/$CONTAINER_TOOL"

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
(cd "$ROOT" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '-s -w' -o "$dir/workload" ./hack/e2e/workload)
printf 'FROM scratch\nCOPY workload /workload\nUSER 65532:65532\nENTRYPOINT ["/workload"]\n' >"$dir/Containerfile"
"$CONTAINER_TOOL" build -q -t "$IMAGE" -f "$dir/Containerfile" "$dir" >"$dir/build.log" 2>&1 ||
  { cat "$dir/build.log" >&2; echo "workload-image: building $IMAGE failed" >&2; exit 1; }
echo "workload-image: built $IMAGE (hack/e2e/workload)" >&2
