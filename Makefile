# rekey Makefile — the kubebuilder targets, plus envtest, demo and bench.
#
# Every tool is pinned and installed from the Go module proxy into ./bin.
# The Kubernetes control plane for tests is built from source by
# hack/setup-envtest.sh (setup-envtest cannot download here) and found the
# standard kubebuilder way through `setup-envtest use -i -p path`.

# Image URL to use all building/pushing image targets
IMG ?= rekey:latest
# YEAR is the year stamped into generated files' boilerplate headers.
YEAR ?= 2026

# CONTAINER_TOOL builds and runs images: docker when its daemon answers, else
# podman (installed with runc from Debian's packages when missing, and run with
# the settings in hack/containers.conf). Set it to docker or podman to choose.
CONTAINER_TOOL ?= ./hack/container-tool.sh

# VERSION is what `rekey version` and `rekey --version` print, stamped into
# the binary and the image (the Dockerfile's VERSION argument).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_LDFLAGS = -X main.version=$(VERSION)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

export GOFLAGS ?= -buildvcs=false

# go.mod's toolchain line names the Go release that rekey is built, tested and
# checked with: a patch release carrying the standard library's security fixes
# (`make vulncheck` checks it). Where GOTOOLCHAIN=local is set (our machines
# set it), the go command would ignore that line and use the installed Go, so
# make asks for auto: the go command then fetches the named release through
# the module proxy once (into the module cache) and runs it. Use
# `make GOTOOLCHAIN=local ...` to build with the installed Go instead.
export GOTOOLCHAIN := auto

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Main commands

DEMO_N ?= 300
.PHONY: demo
demo: build envtest ## Run the main job end to end on a local control plane (see README).
	KUBEBUILDER_ASSETS="$$("$(ENVTEST)" use -i -p path $(ENVTEST_K8S_VERSION))" \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(KUBEBUILDER_CONTROLPLANE_START_TIMEOUT) \
	go run ./hack/demo -n $(DEMO_N) -rekey bin/rekey

.PHONY: test
test: manifests generate fmt vet envtest helm kustomize ## Run unit tests and the envtest suites (with the race detector) against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$$("$(ENVTEST)" use -i -p path $(ENVTEST_K8S_VERSION))" \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(KUBEBUILDER_CONTROLPLANE_START_TIMEOUT) \
	go test -race ./... -coverprofile cover.out $(TEST_ARGS)

KUBEBUILDER_CONTROLPLANE_START_TIMEOUT ?= 60s

TEST_CHART_ARGS ?=
.PHONY: test-chart
test-chart: envtest helm kustomize ## Test the Helm chart: helm lint, in step with the bundle, server-side dry run, and docs/operations.md's helm install/uninstall on a local control plane.
	KUBEBUILDER_ASSETS="$$("$(ENVTEST)" use -i -p path $(ENVTEST_K8S_VERSION))" \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(KUBEBUILDER_CONTROLPLANE_START_TIMEOUT) \
	go test ./test/chart/ -count=1 -v $(TEST_CHART_ARGS)

.PHONY: test-conformance
test-conformance: ## Run the ReEncrypt conformance suite (rekey endpoint, local-kms, embedded) and print its table.
	go test ./test/conformance/ -count=1 -v -run TestConformance

# test-image skips, loudly, only where there is no container engine and none
# can be installed (hack/container-tool.sh --ensure exits 3).
TEST_IMAGE_ARGS ?=
.PHONY: test-image
test-image: envtest ## Build the image, run the operator from it against a local control plane until a rotation completes, and call its kms serve with the AWS SDK.
	@if [ "$(CONTAINER_TOOL)" = ./hack/container-tool.sh ]; then \
		rc=0; engine=$$(./hack/container-tool.sh --ensure) || rc=$$?; \
		if [ $$rc -eq 3 ]; then \
			printf '\n%s\n%s\n%s\n\n' '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' \
				'!!! make test-image SKIPPED: no container engine, and none can be installed (see above)' \
				'!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' >&2; \
			exit 0; \
		fi; \
		[ $$rc -eq 0 ] || exit $$rc; \
		echo "container engine: $$engine"; \
	fi; \
	$(MAKE) --no-print-directory docker-build VERSION="$(VERSION)"; \
	KUBEBUILDER_ASSETS="$$("$(ENVTEST)" use -i -p path $(ENVTEST_K8S_VERSION))" \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(KUBEBUILDER_CONTROLPLANE_START_TIMEOUT) \
	go run ./hack/test-image -image "$(IMG)" -version "$(VERSION)" -engine "$(CONTAINER_TOOL)" $(TEST_IMAGE_ARGS)

# The end-to-end tests run in a real single-node cluster on this machine
# (hack/e2e/cluster.sh): kube-apiserver, etcd and kubectl from `make envtest`;
# kubelet, kube-controller-manager and kube-scheduler built the same way, once
# (cached and version-checked); containerd and runc from Debian's packages.
# One such cluster runs per machine; it needs root.
E2E_IMG ?= localhost/rekey:e2e
E2E_CLUSTER_ENV = SETUP_ENVTEST="$(ENVTEST)" E2E_K8S_VERSION=$(ENVTEST_K8S_VERSION) CONTAINER_TOOL="$(CONTAINER_TOOL)"
.PHONY: e2e-cluster
e2e-cluster: envtest ## Start the end-to-end test cluster (builds kubelet & co. the first time); prints its KUBECONFIG.
	$(E2E_CLUSTER_ENV) ./hack/e2e/cluster.sh up

.PHONY: e2e-cluster-down
e2e-cluster-down: ## Stop the end-to-end test cluster and remove everything it left on the machine.
	$(E2E_CLUSTER_ENV) ./hack/e2e/cluster.sh down

# test-e2e renders dist/install.yaml for E2E_IMG. It skips, loudly, only where
# there is no container engine and none can be installed.
E2E_TEST_ARGS ?=
.PHONY: test-e2e
test-e2e: envtest kustomize helm ## Build the image, start the e2e cluster, install the operator from dist/install.yaml and the chart, rotate, run a workload Pod through the key service, check that every uninstall route keeps the keys, tear down.
	$(E2E_CLUSTER_ENV) E2E_IMG="$(E2E_IMG)" VERSION="$(VERSION)" HELM="$(HELM)" E2E_TEST_ARGS="$(E2E_TEST_ARGS)" ./hack/e2e/test-e2e.sh

# demo-workload: docs/workloads.md on the e2e cluster (started if it does not
# run, stopped again after): the chart with the key service, a key granted to
# a namespace, a Secret from `rekey secret create`, and a workload Pod that
# decrypts with the AWS SDK's default configuration and is refused another
# namespace's key. Needs root, like test-e2e.
.PHONY: demo-workload
demo-workload: envtest helm ## Show a workload Pod decrypting its value through the key service in a real cluster (docs/workloads.md).
	$(E2E_CLUSTER_ENV) E2E_IMG="$(E2E_IMG)" VERSION="$(VERSION)" HELM="$(HELM)" ./hack/demo-workload.sh

BENCH_N ?= 10000
BENCH_NOISE ?= 10000
BENCH_ARGS ?=
.PHONY: bench
bench: build envtest ## Scale benchmark: write ceiling, kubectl recipe, rekey, memory, resume (docs/benchmarks.md).
	KUBEBUILDER_ASSETS="$$("$(ENVTEST)" use -i -p path $(ENVTEST_K8S_VERSION))" \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(KUBEBUILDER_CONTROLPLANE_START_TIMEOUT) \
	go run ./hack/bench -n $(BENCH_N) -noise $(BENCH_NOISE) -rekey bin/rekey $(BENCH_ARGS)

BENCH_KMS_ARGS ?=
.PHONY: bench-kms
bench-kms: build ## Endpoint load benchmark: rekey kms serve vs local-kms vs a null server (docs/benchmarks.md).
	go build -o bin/bench-kms ./hack/bench-kms
	bin/bench-kms -rekey bin/rekey $(BENCH_KMS_ARGS)

.PHONY: bench-engine
bench-engine: ## Engine micro-benchmarks: ReEncrypt beside raw AES-256-GCM, and the endpoint's handler.
	go test ./internal/kms/ ./internal/kms/awsapi/ -run '^$$' -bench . -benchmem

FUZZTIME ?= 20s
.PHONY: fuzz
fuzz: ## Run the blob parser, context canonicaliser and endpoint request decoder fuzzers for FUZZTIME each.
	go test ./internal/kms/ -run '^$$' -fuzz '^FuzzParseBlob$$' -fuzztime $(FUZZTIME)
	go test ./internal/kms/ -run '^$$' -fuzz '^FuzzCanonicalContext$$' -fuzztime $(FUZZTIME)
	go test ./internal/kms/awsapi/ -run '^$$' -fuzz '^FuzzFastDecode$$' -fuzztime $(FUZZTIME)

##@ Development

# CHART_FILES are copied into charts/rekey/files, where the chart's templates
# read them: the generated CRD and manager ClusterRole, the admission policy on
# KeyRotations, the alerts. `make verify` fails when a copy is not current.
CHART_FILES = config/crd/bases/rekey.dev_keyrotations.yaml config/rbac/role.yaml \
	config/admission/policy.yaml config/prometheus/rekey-alerts.yaml

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC from kubebuilder markers, and copy them into the Helm chart.
	"$(CONTROLLER_GEN)" rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	cp $(CHART_FILES) charts/rekey/files/

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	"$(CONTROLLER_GEN)" object:headerFile="hack/boilerplate.go.txt",year=$(YEAR) paths="./..."

# verify also checks the Helm chart against the kustomize bundle (test/chart,
# without a control plane: helm lint, the chart's defaults object for object
# and field for field against config/default, its settings and alerts).
.PHONY: verify
verify: manifests generate helm kustomize ## Fail when generated files are not current, or the Helm chart is not in step with config/.
	@if ! git diff --quiet -- api config charts; then \
		echo "Generated files are out of date; run 'make manifests generate' and commit:" >&2; \
		git --no-pager diff --stat -- api config charts >&2; exit 1; \
	fi
	@if [ -n "$$(git ls-files --others --exclude-standard -- api config charts)" ]; then \
		echo "Untracked generated files; run 'make manifests generate' and commit:" >&2; \
		git ls-files --others --exclude-standard -- api config charts >&2; exit 1; \
	fi
	go test ./test/chart/ -count=1 -skip '^TestChartOnAPIServer$$'

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	"$(GOLANGCI_LINT)" run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply its fixes.
	"$(GOLANGCI_LINT)" run --fix

.PHONY: vulncheck
vulncheck: govulncheck vulndb ## Fail on known vulnerabilities that rekey's code reaches (govulncheck; database built here, see docs/security.md).
	"$(GOVULNCHECK)" -db "file://$(VULNDB)" ./...

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the rekey binary into bin/rekey.
	go build -ldflags "$(VERSION_LDFLAGS)" -o bin/rekey ./cmd/rekey

ROOT_KEY_FILE ?= root.key
KEYSTORE ?= k8s://rekey-system/rekey-keystore
.PHONY: run
run: manifests generate fmt vet ## Run the controller from your host against ~/.kube/config (ROOT_KEY_FILE, KEYSTORE).
	go run ./cmd/rekey controller --root-key-file "$(ROOT_KEY_FILE)" --keystore "$(KEYSTORE)"

# IMAGE_FROM=host (the default) builds a static bin/image/rekey here and the
# Dockerfile's "prebuilt" stage, which pulls no base image; IMAGE_FROM=source
# is the multi-stage build, compiling in the golang image.
IMAGE_FROM ?= host
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
.PHONY: docker-build
docker-build: ## Build the image IMG (FROM scratch: static rekey, CA bundle, user 65532); IMAGE_FROM=source compiles in a golang image.
ifeq ($(IMAGE_FROM),source)
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -t ${IMG} .
else
	mkdir -p bin/image
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w $(VERSION_LDFLAGS)" -o bin/image/rekey ./cmd/rekey
	@[ -f "$(CA_BUNDLE)" ] || ./hack/apt-install.sh ca-certificates || \
		{ echo "No CA bundle at $(CA_BUNDLE): set CA_BUNDLE, or build with IMAGE_FROM=source" >&2; exit 1; }
	cp "$(CA_BUNDLE)" bin/image/ca-certificates.crt
	$(CONTAINER_TOOL) build --target prebuilt --build-arg VERSION=$(VERSION) -t ${IMG} .
endif

.PHONY: docker-push
docker-push: ## Push the container image.
	$(CONTAINER_TOOL) push ${IMG}

# build-installer also renders the opt-in key service for workloads
# (config/kms-service, same image) into dist/kms-service.yaml.
.PHONY: build-installer
build-installer: manifests generate kustomize ## Render CRD, RBAC and Deployment into dist/install.yaml, and the key service (config/kms-service) into dist/kms-service.yaml.
	mkdir -p dist
	rm -rf dist/.kustomize && cp -r config dist/.kustomize
	cd dist/.kustomize/manager && "$(KUSTOMIZE)" edit set image controller=${IMG}
	cd dist/.kustomize/kms-service && "$(KUSTOMIZE)" edit set image controller=${IMG}
	"$(KUSTOMIZE)" build dist/.kustomize/default > dist/install.yaml
	"$(KUSTOMIZE)" build dist/.kustomize/kms-service > dist/kms-service.yaml
	rm -rf dist/.kustomize

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRD into the cluster of the current kubeconfig.
	"$(KUSTOMIZE)" build config/crd | "$(KUBECTL)" apply -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall the CRD (ignore-not-found=true to ignore missing objects).
	"$(KUSTOMIZE)" build config/crd | "$(KUBECTL)" delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: build-installer ## Deploy the operator to the cluster of the current kubeconfig.
	"$(KUBECTL)" apply -f dist/install.yaml

# undeploy keeps the namespace rekey-system, which holds the keystore and the
# root key (labelled rekey.dev/uninstall=keep; see docs/operations.md,
# "Uninstall"). It needs no image, so it renders the bundle without writing dist/.
.PHONY: undeploy
undeploy: kustomize ## Remove the operator, keeping namespace rekey-system and its keys (ignore-not-found=true to ignore missing objects).
	"$(KUSTOMIZE)" build config/default | "$(KUBECTL)" delete --ignore-not-found=$(ignore-not-found) -l 'rekey.dev/uninstall!=keep' -f -

##@ Dependencies

LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p "$(LOCALBIN)"

KUBECTL ?= kubectl
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
ENVTEST ?= $(LOCALBIN)/setup-envtest
GOLANGCI_LINT = $(LOCALBIN)/golangci-lint
GOVULNCHECK = $(LOCALBIN)/govulncheck
HELM ?= $(LOCALBIN)/helm
VULNDB_INDEXDB = $(LOCALBIN)/indexdb

KUSTOMIZE_VERSION ?= v5.7.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
GOVULNCHECK_VERSION ?= v1.9.0
HELM_VERSION ?= v3.22.0
# The vulnerability database's source: golang.org/x/vulndb at a commit (a
# pseudo-version), whose data/osv holds one OSV entry per report; and the
# version of its indexdb command, which turns data/osv into the database
# govulncheck reads. To refresh, see docs/security.md.
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB_INDEXDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB ?= $(LOCALBIN)/vulndb/$(VULNDB_VERSION)
# setup-envtest comes with controller-runtime; the control plane versions go together.
ENVTEST_VERSION ?= v0.25.1
ENVTEST_K8S_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Install kustomize into ./bin.
$(KUSTOMIZE): $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into ./bin.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: setup-envtest
setup-envtest: $(ENVTEST) ## Install setup-envtest into ./bin.
$(ENVTEST): $(LOCALBIN)
	$(call go-install-tool,$(ENVTEST),sigs.k8s.io/controller-runtime/tools/setup-envtest,$(ENVTEST_VERSION))

.PHONY: envtest
envtest: setup-envtest ## Build kube-apiserver, etcd and kubectl from source once and install them for envtest.
	SETUP_ENVTEST="$(ENVTEST)" ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) ./hack/setup-envtest.sh

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint into ./bin.
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

.PHONY: govulncheck
govulncheck: $(GOVULNCHECK) ## Install govulncheck into ./bin.
$(GOVULNCHECK): $(LOCALBIN)
	$(call go-install-tool,$(GOVULNCHECK),golang.org/x/vuln/cmd/govulncheck,$(GOVULNCHECK_VERSION))

# helm stamped as its release builds are (helm's own Makefile): its version,
# and the Kubernetes version of the client-go it is built with (v0.37: 1.37),
# which `helm template` and `helm lint` assume when no cluster is asked.
# Unstamped, helm assumes Kubernetes 1.20, which the chart's kubeVersion refuses.
HELM_K8S_MINOR ?= 37
HELM_LDFLAGS = -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v3/internal/version.metadata= \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)
.PHONY: helm
helm: $(HELM) ## Install helm into ./bin.
$(HELM): $(LOCALBIN)
	$(call go-install-tool,$(HELM),helm.sh/helm/v3/cmd/helm,$(HELM_VERSION),-ldflags "$(HELM_LDFLAGS)")

.PHONY: vulndb-indexdb
vulndb-indexdb: $(VULNDB_INDEXDB) ## Install golang.org/x/vulndb's indexdb into ./bin.
$(VULNDB_INDEXDB): $(LOCALBIN)
	$(call go-install-tool,$(VULNDB_INDEXDB),golang.org/x/vulndb/cmd/indexdb,$(VULNDB_INDEXDB_VERSION))

# The module is downloaded from outside this module (cd /) so that go.mod and
# go.sum stay as they are; the module proxy and the checksum database vouch
# for its content like for any other module.
.PHONY: vulndb
vulndb: $(VULNDB)/index/db.json ## Build govulncheck's database into ./bin/vulndb from golang.org/x/vulndb@VULNDB_VERSION.
$(VULNDB)/index/db.json: | $(VULNDB_INDEXDB)
	@echo "Building the vulnerability database from golang.org/x/vulndb@$(VULNDB_VERSION) into $(VULNDB)"
	src="$$(cd / && go mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')"; \
	[ -d "$$src/data/osv" ] || { echo "golang.org/x/vulndb@$(VULNDB_VERSION): no data/osv in the module" >&2; exit 1; }; \
	rm -rf "$(VULNDB).tmp"; \
	"$(VULNDB_INDEXDB)" -vulns "$$src/data/osv" -out "$(VULNDB).tmp"; \
	rm -rf "$(VULNDB)"; mv "$(VULNDB).tmp" "$(VULNDB)"; \
	echo "$$(ls "$(VULNDB)/ID" | grep -c '\.json$$') entries"

# go-install-tool installs a pinned tool as bin/NAME-VERSION with a bin/NAME symlink.
# $1 - target path with name of binary, $2 - package, $3 - version, $4 - more go install flags (optional)
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Installing $${package}" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $(4) $${package} ;\
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef
