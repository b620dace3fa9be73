# mcp-health-operator — every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml testbed/pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# Every pip install stays within the pinned versions (`make lock` renews them).
PIP_C  := -c constraints.txt
PYTEST_ARGS ?=

.PHONY: help setup system-deps controlplane test lint typecheck unit demo bench bench-health lock clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

system-deps: ## install missing system packages (PostgreSQL, openssl) and check Go
	@bash hack/system-deps.sh

$(STAMP): pyproject.toml testbed/pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIP_C) -e '.[dev,examples]'
	$(BIN)/pip install -q --no-deps -e testbed
	@rm -f $(VENV)/.installed-* && touch $@

setup: system-deps $(STAMP) controlplane ## everything: system packages, venv, control plane binaries

controlplane: $(STAMP) ## build (or reuse from ~/.cache) kube-apiserver and etcd
	$(BIN)/python -m mcp_health_testbed.controlplane build

lint: $(STAMP) ## ruff, and the pure core's import rules (import-linter)
	$(BIN)/ruff check operator testbed tests examples bench
	$(BIN)/ruff format --check operator testbed tests examples bench
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(STAMP) ## fast unit tests only (no real services)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test: setup cluster-build lint typecheck ## all tests, on real services and the cluster (first run builds them)
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

demo: setup ## the demo: control plane, PostgreSQL, both sample servers, mcp-health check
	$(BIN)/python examples/demo.py $(DEMO_ARGS)

bench: bench-health bench-fleet bench-kube bench-status-write bench-scale bench-scale-5000 bench-shards ## all benchmarks (~2.5 h)

bench-health: setup ## health endpoint latency (guide SC-010: p95 < 50 ms)
	$(BIN)/python bench/health_endpoint.py

lock: ## pin every dependency afresh into constraints.txt (then run the tests)
	PYTHON=$(PYTHON) bash hack/lock.sh

clean: ## remove the venv and caches (not the control plane cache in ~/.cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist

# --- packaging: Helm chart, alert rules, dashboard, image ---------------------
.PHONY: helm chart-sync chart-crds chart-check promtool-test hadolint packaging

# `make setup` (and so `make test`) also builds helm up front.
setup: helm

helm: $(STAMP) ## build (or reuse from ~/.cache) the pinned helm from the Go module proxy
	$(BIN)/python -m mcp_health_testbed.helm build

chart-sync: ## copy crds/, the alert rules and the dashboard into the Helm chart
	@bash hack/sync-chart.sh

chart-crds: chart-sync ## alias of chart-sync

chart-check: ## fail if the chart's copies differ from their sources
	@bash hack/sync-chart.sh --check

promtool-test: system-deps ## promtool check + unit tests of the alert rules
	promtool check rules deploy/prometheus/mcp-health-rules.yaml
	promtool test rules tests/promtool/*.yaml

hadolint: $(STAMP) ## lint the Dockerfile
	$(BIN)/hadolint Dockerfile

packaging: setup ## chart, rules, dashboard and image tests only
	$(BIN)/pytest tests/packaging -q $(PYTEST_ARGS)

.PHONY: bench-scale
bench-scale: setup ## the operator at 100 / 1,000 / 3,000 monitors (~30 min)
	$(BIN)/python bench/scale.py --monitors 100,1000,3000 --servers 2 --window 60 --runs 3 $(SCALE_ARGS)

.PHONY: bench-scale-5000
bench-scale-5000: setup ## 5,000 monitors in one process, 3 runs (~30 min)
	$(BIN)/python bench/scale.py --monitors 5000 --servers 2 --window 60 --runs 3 $(SCALE_ARGS)

.PHONY: bench-shards
bench-shards: $(STAMP) ## 10,000 monitors over 3 shard replicas, one killed (~35 min)
	$(BIN)/python bench/shards.py --monitors 10000 --replicas 3 --interval 15 --runs 3 $(SHARDS_ARGS)

# --- a real single-node cluster (kubelet, containerd, CoreDNS, kube-proxy) ---
.PHONY: cluster cluster-down cluster-status cluster-deps cluster-build images

CLUSTER_PKGS := containerd runc containernetworking-plugins iptables conntrack iproute2 buildah debootstrap

cluster-deps: ## Debian packages the cluster needs (containerd, runc, CNI, iptables, buildah, debootstrap)
	@bash hack/system-deps.sh $(CLUSTER_PKGS)

images: setup cluster-deps ## build (or reuse) the images: Debian base, pause, operator, sample servers, CoreDNS
	$(BIN)/python -m mcp_health_testbed.images build

cluster-build: setup cluster-deps ## build (or reuse from ~/.cache) the node components, CoreDNS and the images
	$(BIN)/python -m mcp_health_testbed.controlplane build --node
	$(BIN)/python -m mcp_health_testbed.coredns build
	$(BIN)/python -m mcp_health_testbed.images build

cluster: cluster-build ## start the single-node cluster (idempotent; reuses a running one)
	$(BIN)/python -m mcp_health_testbed.cluster up

cluster-down: ## stop the cluster and remove everything it made
	$(BIN)/python -m mcp_health_testbed.cluster down

cluster-status: ## is the cluster running?
	$(BIN)/python -m mcp_health_testbed.cluster status

# --- the benchmark's own targets ------------------------------------------------
.PHONY: bench-fleet
bench-fleet: $(STAMP) ## the benchmark targets' own CPU: Go fleet (bench/fleet) beside the Python fleet (~5 min)
	$(BIN)/python bench/fleet_cost.py $(FLEET_ARGS)

# kubernetes_asyncio goes beside the venv, not into it: kopf imports its
# client whenever it can, which adds ~36 MB to the RSS of every operator the
# other benchmarks start from the venv. Beside it go those of its
# dependencies the venv lacks; the rest (aiohttp, PyYAML) are the venv's own.
BENCH_EXTRA := $(HOME)/.cache/mcp-health-operator/bench-extra
BENCH_EXTRA_PKGS := kubernetes_asyncio certifi python-dateutil six urllib3
.PHONY: bench-kube
bench-kube: $(STAMP) ## a status write and its Event by Kubernetes client, side by side (~2 min)
	PYTHONPATH=$(BENCH_EXTRA) $(BIN)/python -c 'import kubernetes_asyncio.client' 2>/dev/null || \
	  $(BIN)/pip install -q $(PIP_C) --no-deps --upgrade --target $(BENCH_EXTRA) $(BENCH_EXTRA_PKGS)
	PYTHONPATH=$(BENCH_EXTRA) $(BIN)/python bench/kube_writes.py $(KUBE_ARGS)

.PHONY: bench-status-write
bench-status-write: $(STAMP) ## the API server's CPU a status write: the CRD as shipped against a per-field status (~4 min)
	$(BIN)/python bench/status_write_cost.py $(STATUS_WRITE_ARGS)
