#!/usr/bin/env bash
# demo-workload.sh is `make demo-workload`: docs/workloads.md end to end on the
# single-node cluster of hack/e2e/cluster.sh (started here unless it runs,
# and stopped again if started here; DEMO_KEEP_CLUSTER=1 keeps it).
#
#   1. the image (make docker-build) and the workload's (hack/e2e/workload:
#      the AWS SDK for Go v2's default configuration, nothing of rekey's);
#   2. root key, keystore, a CA and serving certificate (hack/kms-tls.sh);
#   3. the chart with the key service (helm install ... --set kms.enabled=true);
#   4. two keys: alias/billing granted to namespace billing, alias/payments
#      to payments; a Secret in billing written with `rekey secret create`,
#      and a copy of a payments value in billing;
#   5. a workload Pod in billing — projected token (audience rekey), the CA,
#      the standard AWS variables — decrypts billing's value, printing it
#      (a demo value, made up for this), and is refused payments' key;
#   6. the key service's audit lines for that Pod; then everything it made
#      is removed, the keys too.
#
# This cluster has no Service routing: the operator and the key service run
# on the host network (the key service on 127.0.0.1 with a certificate for
# it, one replica), and so does the workload, which calls
# https://127.0.0.1:PORT instead of https://rekey-kms.rekey-system.svc.
#
# Needs root and a container engine, as make test-e2e. Environment (the
# Makefile sets them): E2E_IMG, CONTAINER_TOOL, VERSION, HELM,
# SETUP_ENVTEST, E2E_K8S_VERSION, and cluster.sh's E2E_*.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLUSTER="$ROOT/hack/e2e/cluster.sh"
IMG="${E2E_IMG:-localhost/rekey:e2e}"
WORKLOAD_IMG="${E2E_WORKLOAD_IMG:-localhost/rekey-e2e/workload:e2e}"
CONTAINER_TOOL="${CONTAINER_TOOL:-./hack/container-tool.sh}"
HELM="${HELM:-$ROOT/bin/helm}"
V="${E2E_K8S_VERSION:-1.37.2}"
CACHE="${E2E_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey/e2e-cluster}"
D="${E2E_CLUSTER_DIR:-$CACHE/run}"
APISERVER_PORT="${E2E_APISERVER_PORT:-16443}"
DEMO_VALUE="demo-password-not-a-secret"
t0=$(date +%s)
step() { printf '\n==> %s\n' "$*"; }
say() { printf '    $ %s\n' "$*"; }
indent() { sed 's/^/    /'; }

[[ $(id -u) -eq 0 ]] || { echo "make demo-workload: run as root (the cluster's kubelet and containerd need it)" >&2; exit 1; }
if [[ $CONTAINER_TOOL == ./hack/container-tool.sh ]]; then
  ./hack/container-tool.sh --ensure >/dev/null || { echo "make demo-workload: no container engine (see above)" >&2; exit 1; }
fi

step "Building the image $IMG, the workload's $WORKLOAD_IMG and the rekey CLI"
W="$(mktemp -d /tmp/rekey-demo-workload-XXXXXX)"
make --no-print-directory -s docker-build IMG="$IMG" ${VERSION:+VERSION="$VERSION"} >"$W/build.log" 2>&1 ||
  { cat "$W/build.log" >&2; exit 1; }
CONTAINER_TOOL="$CONTAINER_TOOL" ./hack/e2e/workload-image.sh "$WORKLOAD_IMG" 2>>"$W/build.log"
go build -o "$W/bin/rekey" ./cmd/rekey
export PATH="$W/bin:$PATH"

started=0
if [[ -f /run/rekey-e2e-cluster && "$(cat /run/rekey-e2e-cluster)" == "$D" && "$("$CLUSTER" status 2>/dev/null)" == *$'\nKUBECONFIG='* ]]; then
  step "Using the test cluster that runs already in $D"
else
  step "Starting the test cluster (hack/e2e/cluster.sh up)"
  started=1
fi
export KUBECONFIG="$D/admin.kubeconfig"
kubectl() { "$KUBECTL" "$@"; }
helm() { HELM_CACHE_HOME="$W/helm/cache" HELM_CONFIG_HOME="$W/helm/config" HELM_DATA_HOME="$W/helm/data" "$HELM" "$@"; }
installed=0
finish() {
  local rc=$?
  if [[ $installed -eq 1 ]]; then
    step "Removing what the demo made: the workload, helm uninstall, the keys (docs/operations.md)"
    kubectl delete namespace billing payments --wait=false >/dev/null 2>&1 || true
    helm uninstall rekey -n rekey-system >/dev/null 2>&1 || true
    kubectl label namespace rekey-system rekey.dev/allow-delete=true >/dev/null 2>&1 || true
    kubectl delete namespace rekey-system --wait=false >/dev/null 2>&1 || true
    kubectl delete validatingadmissionpolicybinding,validatingadmissionpolicy rekey-keep-keys --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete crd keyrotations.rekey.dev --ignore-not-found >/dev/null 2>&1 || true
    for _ in $(seq 1 300); do kubectl get namespace rekey-system billing payments >/dev/null 2>&1 || break; sleep 0.2; done
  fi
  if [[ $started -eq 1 ]]; then
    if [[ ${DEMO_KEEP_CLUSTER:-0} == 1 ]]; then
      echo "DEMO_KEEP_CLUSTER=1: the cluster keeps running; KUBECONFIG=$KUBECONFIG; stop it with make e2e-cluster-down"
    else
      "$CLUSTER" down >/dev/null 2>&1 || rc=1
    fi
  fi
  [[ $rc -eq 0 ]] && rm -rf "$W"
  [[ $rc -eq 0 ]] || echo "make demo-workload FAILED (files in $W)" >&2
  exit $rc
}
trap finish EXIT
[[ $started -eq 1 ]] && "$CLUSTER" up 2>&1 | tail -1
"$CLUSTER" load-image "$IMG" 2>/dev/null
"$CLUSTER" load-image "$WORKLOAD_IMG" 2>/dev/null
KUBECTL="$("${SETUP_ENVTEST:-$ROOT/bin/setup-envtest}" ${ENVTEST_BIN_DIR:+--bin-dir "$ENVTEST_BIN_DIR"} use -i -p path "$V")/kubectl"
for n in rekey-system billing payments; do
  if kubectl get namespace "$n" >/dev/null 2>&1; then
    echo "make demo-workload: namespace $n exists already; the demo makes and removes rekey-system, billing and payments," \
      "so it needs a cluster without them (make e2e-cluster-down stops this one)" >&2
    exit 1
  fi
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
KMS_PORT=$(free_port) HEALTH_PORT=$(free_port) METRICS_PORT=$(free_port)
cd "$W"
installed=1

step "Root key, keystore, and the key service's CA and certificate (docs/operations.md, docs/workloads.md)"
say "kubectl create namespace rekey-system"
kubectl create namespace rekey-system >/dev/null
(umask 077; head -c 32 /dev/urandom | base64 >root.key)
say "kubectl -n rekey-system create secret generic rekey-root-key --from-file=root.key"
kubectl -n rekey-system create secret generic rekey-root-key --from-file=root.key >/dev/null
export REKEY_KEYSTORE=k8s://rekey-system/rekey-keystore REKEY_ROOT_KEY_FILE=root.key
say "rekey keystore init"
rekey keystore init | indent
say "hack/kms-tls.sh ca kms-ca/ && hack/kms-tls.sh cert kms-ca/ 127.0.0.1 localhost   # the Service's names in a real cluster"
"$ROOT/hack/kms-tls.sh" ca kms-ca >/dev/null && "$ROOT/hack/kms-tls.sh" cert kms-ca 127.0.0.1 localhost | indent
say "kubectl -n rekey-system create secret tls rekey-kms-tls --cert=kms-ca/tls.crt --key=kms-ca/tls.key"
kubectl -n rekey-system create secret tls rekey-kms-tls --cert=kms-ca/tls.crt --key=kms-ca/tls.key >/dev/null

step "The operator and the key service: helm install rekey charts/rekey --set kms.enabled=true"
repo=${IMG%:*} tag=${IMG##*:}
cat >values.yaml <<EOF
# This cluster: no Service routing, the apiserver on 127.0.0.1:$APISERVER_PORT.
image: {repository: "$repo", tag: "$tag", pullPolicy: Never}
hostNetwork: true
healthProbe: {host: 127.0.0.1, port: $HEALTH_PORT}
metrics: {host: 127.0.0.1, port: $METRICS_PORT}
env:
- {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
- {name: KUBERNETES_SERVICE_PORT, value: "$APISERVER_PORT"}
kms:
  enabled: true
  replicas: 1
  podDisruptionBudget: {enabled: false}
  hostNetwork: true
  host: 127.0.0.1
  port: $KMS_PORT
  env:
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$APISERVER_PORT"}
EOF
say "helm install rekey $ROOT/charts/rekey -n rekey-system -f values.yaml   # values.yaml: this cluster's settings"
helm install rekey "$ROOT/charts/rekey" -n rekey-system -f values.yaml >"$W/helm.log"
say "kubectl -n rekey-system rollout status deployment/rekey-kms"
kubectl -n rekey-system rollout status deployment/rekey-kms --timeout=180s | indent
kubectl -n rekey-system rollout status deployment/rekey-controller-manager --timeout=180s >/dev/null

step "Keys: alias/billing for namespace billing, alias/payments for payments; the values, with rekey secret create"
for app in billing payments; do
  say "rekey key create --alias alias/$app --allow-namespace $app"
  rekey key create --alias "alias/$app" --allow-namespace "$app" | indent
  say "rekey key grant alias/$app --operations decrypt $app"
  rekey key grant "alias/$app" --operations decrypt "$app" | indent
  kubectl create namespace "$app" >/dev/null
done
say "rekey secret create billing-db --namespace billing --key alias/billing --context app=billing --from-file password=- --apply"
printf %s "$DEMO_VALUE" | rekey secret create billing-db --namespace billing --key alias/billing --context app=billing \
  --from-file password=- --apply | indent
say "rekey secret create payments-db --namespace billing --key alias/payments --context app=billing --from-file password=- --apply"
echo "    (a value under payments' key, as if copied into billing)"
printf %s "another demo value" | rekey secret create payments-db --namespace billing --key alias/payments --context app=billing \
  --from-file password=- --apply | indent
say "kubectl -n billing create configmap rekey-kms-ca --from-file=ca.crt=kms-ca/ca.crt"
kubectl -n billing create configmap rekey-kms-ca --from-file=ca.crt=kms-ca/ca.crt >/dev/null

step "A workload Pod in billing: projected token (audience rekey), the CA, the standard AWS variables"
URL="https://127.0.0.1:$KMS_PORT"
cat >workload.yaml <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: billing-api, namespace: billing}
---
apiVersion: v1
kind: Pod
metadata: {name: billing-api, namespace: billing}
spec:
  serviceAccountName: billing-api
  hostNetwork: true                         # this cluster: $URL, not the Service
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: $WORKLOAD_IMG
    imagePullPolicy: Never
    args: [-context, app=billing, -show, /var/run/secrets/db/password, -denied, /var/run/secrets/other/password]
    env:
    - {name: AWS_CONTAINER_CREDENTIALS_FULL_URI, value: "$URL/v1/credentials"}
    - {name: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, value: /var/run/secrets/rekey/token}
    - {name: AWS_ENDPOINT_URL_KMS, value: "$URL"}
    - {name: AWS_CA_BUNDLE, value: /etc/rekey-kms-ca/ca.crt}
    - {name: SSL_CERT_FILE, value: /etc/rekey-kms-ca/ca.crt}
    - {name: AWS_REGION, value: local}
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    volumeMounts:
    - {name: rekey-token, mountPath: /var/run/secrets/rekey, readOnly: true}
    - {name: rekey-kms-ca, mountPath: /etc/rekey-kms-ca, readOnly: true}
    - {name: db, mountPath: /var/run/secrets/db, readOnly: true}
    - {name: other, mountPath: /var/run/secrets/other, readOnly: true}
  volumes:
  - name: rekey-token
    projected:
      sources:
      - serviceAccountToken: {audience: rekey, expirationSeconds: 3600, path: token}
  - {name: rekey-kms-ca, configMap: {name: rekey-kms-ca}}
  - {name: db, secret: {secretName: billing-db}}
  - {name: other, secret: {secretName: payments-db}}
EOF
indent <workload.yaml
say "kubectl apply -f workload.yaml"
kubectl apply -f workload.yaml | indent
phase=""
for _ in $(seq 1 600); do
  phase=$(kubectl -n billing get pod billing-api -o jsonpath='{.status.phase}')
  [[ $phase == Succeeded || $phase == Failed ]] && break
  sleep 0.2
done
say "kubectl -n billing logs billing-api"
kubectl -n billing logs billing-api | indent
echo "    (phase $phase)"

step "The key service's audit log, for system:serviceaccount:billing:billing-api"
say "kubectl -n rekey-system logs deploy/rekey-kms | grep billing-api"
kubectl -n rekey-system logs deploy/rekey-kms | grep 'system:serviceaccount:billing:billing-api' | indent || true

logs=$(kubectl -n billing logs billing-api)
if [[ $phase != Succeeded || $logs != *"DECRYPTED /var/run/secrets/db/password"*"\"$DEMO_VALUE\""* ||
  $logs != *"DENIED /var/run/secrets/other/password: AccessDeniedException"* ]]; then
  echo "make demo-workload: the workload did not decrypt its value and get refused the other one (above)" >&2
  exit 1
fi
echo
echo "    The Pod decrypted billing's value with the AWS SDK's default configuration, and was refused payments' key."
echo "    ($(( $(date +%s) - t0 )) s, building included)"
echo "DEMO-WORKLOAD OK"
