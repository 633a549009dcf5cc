# The README's commands. `make up` and `make test` install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(VENV)/bin
# Debian packages the tests and `redline up` use: command -> package.
SYSTEM_DEPS := promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
               prometheus-alertmanager:prometheus-alertmanager wrk:wrk hey:hey \
               docker-compose:docker-compose nats-server:nats-server

.PHONY: up test test-replicas fuzz lint fmt bench bench-all dashboards kubernetes install system-deps binaries clean help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

up: install system-deps binaries  ## Install, then run the whole platform in the foreground
	$(RUN)/redline up

test: install system-deps  ## Install, then run the test suite
	$(RUN)/python -m redline.binaries --require
	$(RUN)/pytest

# A stack with two of gateway, inventory and payments and three of orders:
# balancing, saga recovery across instances, `redline restart`. ~1.5 min on 2
# cores, not in `make test` (pytest -m replicas); the replica-killed and
# rolling-restart experiments are, on the shared stack's two inventories.
test-replicas: install system-deps  ## The larger replica stack's tests (~1.5 min)
	$(RUN)/python -m redline.binaries --require
	$(RUN)/pytest -m replicas tests/test_replicas.py

# `make test` fuzzes with 8 examples per operation; this is the deep run.
FUZZ_EXAMPLES ?= 200
FUZZ_SEED ?= 20261205
fuzz: install  ## schemathesis against every service and the gateway, deeper (FUZZ_EXAMPLES, FUZZ_SEED)
	@echo "schemathesis: $(FUZZ_EXAMPLES) examples per operation, seed $(FUZZ_SEED)"
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) $(RUN)/pytest tests/test_fuzz.py -s -q

lint: install  ## ruff and mypy
	$(RUN)/ruff check .
	$(RUN)/ruff format --check .
	$(RUN)/mypy

fmt: install  ## Format the code
	$(RUN)/ruff format .
	$(RUN)/ruff check --fix .

# The benchmarks also count instructions under valgrind; the tests do not need it.
bench: SYSTEM_DEPS += valgrind:valgrind callgrind_control:valgrind
# Durations are estimates from each script's rounds and run times.
bench: install system-deps  ## Run the instrumentation and client benchmarks (~13 min)
	$(RUN)/python benchmarks/instrumentation_overhead.py  # ~4 min (with the stock Litestar stack)
	$(RUN)/python benchmarks/instruction_counts.py        # ~5 min (valgrind)
	$(RUN)/python benchmarks/resilience_bench.py          # ~2 min
	$(RUN)/python benchmarks/http_client.py               # ~2 min

bench-all: SYSTEM_DEPS += valgrind:valgrind callgrind_control:valgrind
bench-all: bench  ## Run every benchmark the README quotes (~40 min)
	$(RUN)/python benchmarks/server_span.py               # ~1 min
	$(RUN)/python benchmarks/otlp_encoding.py             # ~1 min
	$(RUN)/python benchmarks/red_metrics.py               # ~1 min
	$(RUN)/python benchmarks/log_line.py                  # ~1 min
	$(RUN)/python benchmarks/e2e_orders.py                # ~3 min (starts a stack)
	$(RUN)/python benchmarks/locust_throughput.py         # ~4 min
	$(RUN)/python benchmarks/load_spans.py                # ~3 min
	$(RUN)/python benchmarks/stack_memory.py              # ~1.5 min (starts a stack)
	$(RUN)/python benchmarks/load_compare_noise.py --pairs 10  # ~7 min (starts a stack)
	$(RUN)/python benchmarks/db_spans.py                  # ~1.5 min
	$(RUN)/python benchmarks/gateway_hop.py               # ~2 min
	$(RUN)/python benchmarks/telemetry_routes.py          # ~2 min
	$(RUN)/python benchmarks/order_capacity.py            # ~3-5 min (starts a stack)

dashboards: install  ## Regenerate the Grafana dashboards' JSON
	$(RUN)/python -m dashboards

kubernetes: install  ## Regenerate the Kubernetes base (deploy/kubernetes/base)
	$(RUN)/python -m deploy.kubernetes

install: $(VENV)/.installed

# The Collector and Jaeger (and kustomize, for the manifest tests), built from
# pinned Go modules into ~/.cache/redline when missing or stale (minutes, once);
# without Go, `make up` runs without them.
binaries: install  ## Build the OpenTelemetry Collector, Jaeger and kustomize (needs Go)
	$(RUN)/python -m redline.binaries

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Re-sync when the lock file changes.
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --python $(PYTHON)
	@touch $@

system-deps:  ## Install the Debian packages the tests need, when missing and possible
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -z "$${missing// /}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "warning: missing commands from Debian packages:$$missing"; \
	  echo "         install them with: sudo apt-get install$$missing"; \
	  echo "         (tests that need them will fail and name the package)"; \
	fi

clean:  ## Remove the virtualenvs and local data (.redline/)
	rm -rf $(VENV) $(TOOLS) .redline .pytest_cache .mypy_cache .ruff_cache
