# Two commands on a fresh machine: `make run` and `make test`. Both create .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export STUDIO_STATE_DIR ?= .studio

.PHONY: run test lint format bench schema migrate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/studio-integrations migrate
	$(BIN)/studio-integrations seed-demo --tenant acme
	@echo
	@echo "GraphiQL:  http://$${STUDIO_HOST:-127.0.0.1}:$${STUDIO_PORT:-8000}/graphql"
	@echo "Dev token (tenant acme, subject alice, all scopes) - paste into GraphiQL's headers as"
	@echo '  {"Authorization": "Bearer <token>"}'
	@echo
	@$(BIN)/studio-integrations token --tenant acme --scopes all --subject alice --name "Alice (dev)"
	@echo
	$(BIN)/studio-integrations serve

# Tests run in parallel processes (pytest-xdist), each with its own template databases;
# PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

schema: $(STAMP)
	$(BIN)/studio-integrations export-schema > schema.graphql

bench: $(STAMP)
	$(BIN)/python -m bench

migrate: $(STAMP)
	$(BIN)/studio-integrations migrate

clean:
	rm -rf $(VENV) .studio studio.db studio.db-wal studio.db-shm .pytest_cache .mypy_cache .ruff_cache
