# The two commands of the README: `make up` runs the system, `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck unit bench migrate clean system-packages fuzz soak

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing caracal with its dev extras into $(VENV)"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian packages the suite runs for real, as <binary>:<package> (nginx: the rolling restart and the
# forwarded-header tests, tests/e2e/nginx.py; faketime: the reaper on a skewed clock,
# tests/e2e/test_faults.py). Installed only when the binary is missing, and only as root; otherwise we
# say what to install.
SYSTEM_PACKAGES := nginx:nginx faketime:faketime

system-packages:
	@for pair in $(SYSTEM_PACKAGES); do \
	  bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  if command -v $$bin >/dev/null 2>&1 || test -x /usr/sbin/$$bin; then continue; fi; \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "==> $$bin not found: as root, apt-get install -y --no-install-recommends $$pkg"; exit 1; \
	  fi; \
	  echo "==> installing Debian's $$pkg (the tests run $$bin)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg \
	    || exit 1; \
	done

up: $(STAMP)
	@$(BIN)/caracal up

migrate: $(STAMP)
	@$(BIN)/caracal migrate

lint: $(STAMP)
	@echo "==> ruff"
	@$(BIN)/ruff check libs services tests bench migrations
	@$(BIN)/ruff format --check libs services tests bench migrations
	@echo "==> import contracts"
	@$(BIN)/lint-imports

typecheck: $(STAMP)
	@echo "==> mypy --strict"
	@$(BIN)/mypy

test: system-packages lint typecheck
	@echo "==> pytest"
	@$(BIN)/pytest -q

# Schemathesis, every phase and check, FUZZ_EXAMPLES (default 500) cases per operation, a fresh seed
# (FUZZ_SEED replays one), FUZZ_MAX_TIME seconds at most when set; tests/fuzz. Not part of `make test`
# (the suite runs a fixed 30 per operation).
fuzz: $(STAMP)
	@$(BIN)/python -m tests.fuzz

# Mixed traffic at SOAK_PERCENT (80) % of the measured capacity, 32 connections, two API replicas and
# two dispatchers, for SOAK_SECONDS (600); SOAK_RATE=<requests/s> skips the capacity probe. Fails on a
# 5xx, a lost, repeated or reordered event, memory growth, or a p99 above its goal (bench/soak.py).
soak: $(STAMP)
	@$(BIN)/python -m bench.soak

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || echo "==> wrk not found: the api benchmark needs it (apt-get install -y wrk)"
	@$(BIN)/python -m bench

clean:
	rm -rf .caracal .pytest_cache .mypy_cache .ruff_cache
