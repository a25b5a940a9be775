# Dendrite: the two commands a newcomer needs are `make serve` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,dev,train
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,

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

bench: install ## serving benchmark: throughput/latency table and plot under bench/results/
	$(BIN)/python -m bench.serving

clean:
	rm -rf $(VENV) .pytest_cache bench/results
