# tcr-assistant: the two commands a newcomer needs are `make run` and `make test`.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO        ?= go
BIN       := $(CURDIR)/bin
GOFLAGS_BUILD := -trimpath
# The binaries are built as the image ships them (Dockerfile): static, without cgo, so that what
# `make bench` measures is what runs in the cluster (a cgo build maps libc: 2-3 MiB more RSS).
SHIPPED := CGO_ENABLED=0

CONTROLLER_GEN_VERSION := v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint
CONTROLPLANE_DIR := hack/tools/controlplane
# kubectl from the PATH when there is one, else built from the pinned control-plane module.
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(BIN)/kubectl)

TEST_FLAGS ?= -count=1 -timeout=30m
export KUBEBUILDER_ASSETS := $(BIN)
export KUBECTL

.PHONY: all
all: build

##@ Development

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD, the manager's ClusterRole and the webhook configuration from markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=tcr-assistant-manager-role paths=./controllers/... paths=./admission/... paths=./cmd/manager/... output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) webhook paths=./admission/... output:webhook:artifacts:config=config/webhook

.PHONY: fmt
fmt: ## Format the Go code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint with the repository's .golangci.yml.
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests verify-installer verify-chart lint ## Regenerate everything and fail on any difference (CRD, RBAC, webhook, dist/install.yaml, the chart); gofmt, go vet and golangci-lint.
	@changed=$$(git status --porcelain -- api config | grep -v '^??' || true); \
	untracked=$$(git status --porcelain --untracked-files=all -- api config | grep '^??' || true); \
	if [ -n "$$changed$$untracked" ]; then \
	  echo "Generated files are out of date (run 'make generate manifests' and commit):"; \
	  echo "$$changed$$untracked"; git --no-pager diff --stat -- api config; exit 1; fi
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet -tags node ./...
	@echo "verify: generated files, gofmt, go vet and golangci-lint are clean"

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	$(SHIPPED) $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/...

# --- image without Docker (hack/image, internal/image) ----------------------------------------
# 'make image' runs the Dockerfile's go build and writes the image, linux/$(IMAGE_ARCH), as an OCI
# image layout to bin/image/: the binaries over a base layer made in the repository like
# distroless static:nonroot, with the CA bundle $(CA_BUNDLE) of this machine. The same binaries
# and bundle give the same digest (file times: SOURCE_DATE_EPOCH, else 1970). 'make image-push'
# pushes it as $(IMG) with the credential of the docker config (DOCKER_CONFIG, else ~/.docker);
# REGISTRY_CA is a PEM file of CAs trusted besides the system's, for a registry with a private CA.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
REGISTRY_CA ?=

.PHONY: image
image: ## Build the image (manager, hosts-updater, kubectl-ips, tcr-credential-provider) into bin/image/ as an OCI layout, without Docker.
	@hack/image/ca-bundle.sh '$(CA_BUNDLE)'
	GOOS= GOARCH= $(GO) build -o $(BIN)/imagetool ./hack/image
	$(BIN)/imagetool build --go '$(GO)' --arch '$(IMAGE_ARCH)' --ca-bundle '$(CA_BUNDLE)' --out $(BIN)/image

.PHONY: image-push
image-push: ## Push bin/image/ as $(IMG), with the docker config's credential (DOCKER_CONFIG); REGISTRY_CA=<PEM file> for a private CA.
	GOOS= GOARCH= $(GO) build -o $(BIN)/imagetool ./hack/image
	REGISTRY_CA='$(REGISTRY_CA)' $(BIN)/imagetool push --layout $(BIN)/image '$(IMG)'
# --- end image -------------------------------------------------------------------------------

# --- run (controller engineer) ---------------------------------------------------------------
# RUN_ARGS are extra flags for bin/manager. Against a configured cluster the webhook is off (the
# API server could not reach it); with no cluster, hack/run runs the whole add-on locally, the
# webhook included (see README).
RUN_ARGS ?=

.PHONY: run
run: controlplane $(KUBECTL) ## Run the add-on (against the configured cluster, else on an embedded local control plane).
	$(SHIPPED) $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/manager ./cmd/hosts-updater
	@if [ -n "$$KUBECONFIG" ] || [ -f "$$HOME/.kube/config" ]; then \
	  echo "Running the manager against the cluster of $${KUBECONFIG:-$$HOME/.kube/config} (Ctrl-C stops it)"; \
	  exec $(BIN)/manager --enable-webhook=false $(RUN_ARGS); \
	else \
	  echo "No KUBECONFIG and no ~/.kube/config: running the whole add-on on a local control plane (Ctrl-C stops everything)"; \
	  $(GO) build -o $(BIN)/run-local ./hack/run; \
	  exec $(BIN)/run-local --manager $(BIN)/manager --hosts-updater $(BIN)/hosts-updater -- $(RUN_ARGS); \
	fi
# --- end run ---------------------------------------------------------------------------------

##@ Test

.PHONY: test
test: controlplane $(KUBECTL) ## Run every unit and integration test (builds the local control plane when missing).
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz-agent FUZZTIME=2000x
	@$(MAKE) --no-print-directory node-suite

##@ Install bundle

# IMG is the image of the manager and the hosts-updater in the bundle, as name:tag.
IMG ?= tcr-assistant:v0.1.0
CONTAINER_TOOL ?= docker
INSTALLER := dist/install.yaml

# render-installer renders config/default with the image set to $(IMG) into the file $(1), through
# a throw-away overlay so that config/default itself is never edited.
define render-installer
overlay=$$(mktemp -d); trap 'rm -rf "$$overlay"' EXIT; \
img='$(IMG)'; name="$${img%:*}"; tag="$${img##*:}"; \
case "$$img" in *:*) ;; *) echo "IMG must be name:tag, got '$$img'"; exit 1;; esac; \
case "$$tag" in */*) echo "IMG must be name:tag, got '$$img'"; exit 1;; esac; \
printf 'resources:\n- %s\nimages:\n- name: tcr-assistant\n  newName: %s\n  newTag: %s\n' \
  "$$(realpath --relative-to="$$overlay" '$(CURDIR)/config/default')" "$$name" "$$tag" \
  > "$$overlay/kustomization.yaml"; \
{ echo "# tcr-assistant $$tag: rendered from config/default by 'make build-installer'; do not edit."; \
  echo "# Install or upgrade: kubectl apply -f install.yaml"; \
  $(KUBECTL) kustomize "$$overlay"; } > $(1)
endef

.PHONY: build-installer
build-installer: manifests $(KUBECTL) ## Render the whole add-on into dist/install.yaml, with image $(IMG).
	@mkdir -p $(dir $(INSTALLER))
	@( $(call render-installer,$(INSTALLER).tmp) ) || { rm -f $(INSTALLER).tmp; exit 1; }
	@mv $(INSTALLER).tmp $(INSTALLER)
	@echo "Rendered $(INSTALLER) with image $(IMG)"

.PHONY: verify-installer
verify-installer: $(KUBECTL) ## Fail when dist/install.yaml is not what config/ renders.
	@tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; \
	( $(call render-installer,$$tmp) ); \
	if ! diff -u $(INSTALLER) "$$tmp"; then \
	  echo "$(INSTALLER) is out of date (run 'make build-installer' and commit)"; exit 1; fi

##@ Helm chart

CHART := charts/tcr-assistant

# render-chart writes the generated part of the chart (templates/bundle/, Chart.yaml) into the
# chart folder $(1), from the same rendering of config/ as dist/install.yaml, so the two cannot
# drift.
define render-chart
bundle=$$(mktemp); trap 'rm -f "$$bundle"' EXIT; \
( $(call render-installer,$$bundle) ); \
$(GO) run ./hack/chartgen --bundle "$$bundle" --chart $(1)
endef

.PHONY: chart
chart: manifests $(KUBECTL) ## Regenerate the chart's templates from config/ (with image $(IMG)).
	@( $(call render-chart,$(CHART)) )
	@echo "Regenerated $(CHART) from config/ with image $(IMG)"

.PHONY: verify-chart
verify-chart: $(KUBECTL) ## Fail when the chart's generated templates are not what config/ renders.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -r $(CHART) "$$tmp/chart"; \
	( $(call render-chart,$$tmp/chart) ); \
	if ! diff -ru $(CHART) "$$tmp/chart"; then \
	  echo "$(CHART) is out of date (run 'make chart' and commit)"; exit 1; fi

.PHONY: docker-build
docker-build: ## Build the image $(IMG) (manager, hosts-updater, kubectl-ips, tcr-credential-provider) with $(CONTAINER_TOOL).
	$(CONTAINER_TOOL) build -t $(IMG) .

##@ Benchmark

# N is the number of namespaces of `make bench` (default 1000; 10000 with SCALE=large); SCALE=large
# also raises the unrelated Secrets from 5,000 to 50,000. RECOVER=1 adds the recoverPods scenario
# (5 Running Pods per namespace, the manager's peak RSS with recoverPods against a baseline run
# without it). BENCH_FLAGS passes more flags to bin/tcr-bench (see 'bin/tcr-bench -h'). The
# figures go to stdout, progress to stderr.
N ?=
SCALE ?=
RECOVER ?=
BENCH_FLAGS ?=

.PHONY: bench
bench: controlplane ## Run the scale benchmark against a local control plane (N=, SCALE=large, RECOVER=1); not part of 'make test'.
	$(SHIPPED) $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/manager ./cmd/hosts-updater ./bench/cmd/tcr-bench
	$(BIN)/tcr-bench $(if $(SCALE),-scale $(SCALE)) $(if $(N),-n $(N)) $(if $(RECOVER),-recover-pods) $(BENCH_FLAGS)

##@ Tools

# The local control plane comes from hack/controlplane.sh: the prebuilt envtest binaries of the
# Kubernetes version $(CONTROLPLANE_DIR) pins, fetched by setup-envtest (about a minute), or, when
# they cannot be fetched (offline), the from-source build of the pinned modules (seven to nine
# minutes). ENVTEST_INDEX points setup-envtest at another release index ("none" skips the fetch);
# ENVTEST_PROBE_TIMEOUT (seconds) bounds how long reading the index may take before the fallback.
SETUP_ENVTEST_VERSION := v0.25.1
ENVTEST_INDEX ?=
ENVTEST_PROBE_TIMEOUT ?= 15

.PHONY: controlplane
controlplane: $(BIN)/etcd $(BIN)/kube-apiserver ## Fetch prebuilt etcd and kube-apiserver (setup-envtest), else build them from pinned modules.

$(BIN)/etcd $(BIN)/kube-apiserver &: $(CONTROLPLANE_DIR)/go.mod $(CONTROLPLANE_DIR)/go.sum $(CONTROLPLANE_DIR)/etcd/main.go
	GO='$(GO)' SETUP_ENVTEST_VERSION=$(SETUP_ENVTEST_VERSION) ENVTEST_INDEX='$(ENVTEST_INDEX)' \
	ENVTEST_PROBE_TIMEOUT=$(ENVTEST_PROBE_TIMEOUT) hack/controlplane.sh $(BIN)

$(BIN)/kubectl: $(CONTROLPLANE_DIR)/go.mod $(CONTROLPLANE_DIR)/go.sum
	cd $(CONTROLPLANE_DIR) && $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ k8s.io/kubernetes/cmd/kubectl

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

##@ Single-node cluster

# The node of the single-node test cluster (test/node): kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy of the control plane's pinned k8s.io/kubernetes, linked once as
# bin/node (hard links of each program's name call it); containerd and ctr of
# hack/tools/containerd, linked once as bin/containerd, and its runc shim, a binary of its own.
# runc and the CNI plugins come from Debian's packages. The first build took 40 minutes on two
# busy cores (README, "Single-node cluster").
# NODE_DIR holds the running node's state, logs and kubeconfigs.
NODE_DIR ?= /tmp/tcr-node
NODE_PROGRAMS := kubelet kube-controller-manager kube-scheduler kube-proxy
CONTAINERD_DIR := hack/tools/containerd
# The version the components report (a build from the module has none of its own).
K8S_VERSION := $(shell sed -n 's/^[[:space:]]*k8s\.io\/kubernetes v\([0-9.]*\)$$/\1/p' $(CONTROLPLANE_DIR)/go.mod | head -n 1)
NODE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=v$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION))) \
  -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION))) \
  -X k8s.io/client-go/pkg/version.gitVersion=v$(K8S_VERSION)
# What the node needs from Debian, as "command-or-file:package".
NODE_PACKAGES := runc:runc /usr/lib/cni/bridge:containernetworking-plugins iptables:iptables conntrack:conntrack

.PHONY: node-binaries
node-binaries: $(BIN)/node $(BIN)/containerd node-packages ## Build the node's programs into bin/ and install runc and the CNI plugins when missing.

$(BIN)/node: $(CONTROLPLANE_DIR)/go.mod $(CONTROLPLANE_DIR)/go.sum $(CONTROLPLANE_DIR)/node/main.go
	cd $(CONTROLPLANE_DIR) && $(SHIPPED) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(NODE_LDFLAGS)' -o $(BIN)/node ./node
	for p in $(NODE_PROGRAMS); do ln -f $(BIN)/node $(BIN)/$$p; done

$(BIN)/containerd: $(CONTAINERD_DIR)/go.mod $(CONTAINERD_DIR)/go.sum $(CONTAINERD_DIR)/main.go $(CONTAINERD_DIR)/shim/main.go
	cd $(CONTAINERD_DIR) && $(SHIPPED) $(GO) build $(GOFLAGS_BUILD) -tags "no_btrfs no_devmapper no_zfs" -o $(BIN)/containerd . && \
	  $(SHIPPED) $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/containerd-shim-runc-v2 ./shim
	ln -f $(BIN)/containerd $(BIN)/ctr

.PHONY: node-up
node-up: node-binaries ## Start a single-node cluster (real kubelet and containerd) in the network namespace tcr-node, as root (hack/node/node.sh).
	hack/node/node.sh up $(NODE_DIR)

.PHONY: test-node
test-node: node-binaries image ## Run the node suite (test/node), as root: it starts the single-node cluster, runs inside its network namespace, and stops it whatever happened.
	PATH="$(BIN):$$PATH" NODE_DIR=$(NODE_DIR) $(GO) test -tags node -count=1 -timeout 30m -v ./test/node

# node-suite is 'make test''s last step: the node suite as root; elsewhere one line says why not,
# unless TCR_NODE_REQUIRED is set (.ci/run), which makes it run, and fail where it cannot.
.PHONY: node-suite
node-suite:
	@if [[ $$(id -u) == 0 || -n "$(TCR_NODE_REQUIRED)" ]]; then $(MAKE) --no-print-directory test-node; \
	else echo "node suite skipped: it needs root (network and mount namespaces, cgroups, iptables); run 'sudo make test-node'"; fi

.PHONY: node-down
node-down: ## Stop the single-node cluster and remove everything it left (processes, cgroups, the namespace, NODE_DIR).
	hack/node/node.sh down $(NODE_DIR)

.PHONY: node-packages
node-packages: ## Install the Debian packages the node needs (runc, CNI plugins, iptables, conntrack) when missing.
	@missing=(); for want in $(NODE_PACKAGES); do what=$${want%%:*}; \
	  if [[ $$what == /* ]]; then [[ -e $$what ]] || missing+=("$${want##*:}"); \
	  else command -v "$$what" >/dev/null || missing+=("$${want##*:}"); fi; done; \
	if (( $${#missing[@]} == 0 )); then exit 0; fi; \
	if [[ $$(id -u) != 0 ]]; then echo "the node needs Debian packages: run 'apt-get install $${missing[*]}' as root"; exit 1; fi; \
	echo "installing $${missing[*]}"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$${missing[@]}" >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$${missing[@]}" >/dev/null; }

##@ hosts-updater

# FUZZTIME is how long each fuzz target of `make fuzz-agent` runs: a duration, or an iteration
# count such as 2000x (what `make test` runs, bounded whatever the machine's speed).
FUZZTIME ?= 30s

.PHONY: fuzz-agent
fuzz-agent: ## Fuzz the hosts-updater's merge, config parser and journal recovery, FUZZTIME (default 30s) each.
	$(GO) test -run '^$$' -fuzz '^FuzzMerge$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzRecoverContent$$' -fuzztime $(FUZZTIME) ./agent/

##@ Rule engine

.PHONY: fuzz
fuzz: ## Fuzz the rule engine's list parser and compiler, FUZZTIME (default 30s) each.
	$(GO) test -run '^$$' -fuzz '^FuzzParseList$$' -fuzztime $(or $(FUZZTIME),30s) ./engine/
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(or $(FUZZTIME),30s) ./engine/
