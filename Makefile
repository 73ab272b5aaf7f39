# The two commands of the README: `make up` runs the system, `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck unit bench migrate clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing caracal with its dev extras into $(VENV)"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

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

test: lint typecheck
	@echo "==> pytest"
	@$(BIN)/pytest -q

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || echo "==> wrk not found: the api benchmark needs it (apt-get install -y wrk)"
	@$(BIN)/python -m bench

clean:
	rm -rf .caracal .pytest_cache .mypy_cache .ruff_cache
