# Two commands on a fresh machine: `make run` and `make test`. Both create .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export STUDIO_STATE_DIR ?= .studio

.PHONY: run test lint format bench schema migrate web clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo runs offline: its connections call the in-app sandbox provider on loopback, and
# probes every 15 s make the dashboard show healthy, degraded and unhealthy within a minute.
run: export STUDIO_DEMO_SANDBOX ?= true
run: export STUDIO_ALLOW_LOOPBACK_TARGETS ?= true
run: export STUDIO_PROBE_INTERVAL_SECONDS ?= 15
run: $(STAMP)
	$(BIN)/studio-integrations migrate
	$(BIN)/studio-integrations seed-demo --tenant acme
	@echo
	@echo "Dev token (tenant acme, subject alice, all scopes): paste it into the Token field"
	@echo "of GraphiQL (/graphql) or the External Health dashboard (/dashboard)"
	@echo
	@$(BIN)/studio-integrations token --tenant acme --scopes all --subject alice --name "Alice (dev)"
	@echo
	$(BIN)/studio-integrations serve

# Tests run in parallel processes (pytest-xdist), each with its own template databases;
# PYTEST_WORKERS=0 runs them in one process. worksteal: an idle worker takes tests queued on a
# busy one, so the long generated-input tests do not leave one worker finishing alone
# (fresh clone: 186 s instead of 219 s with the default scheduling).
PYTEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=15

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

# GraphiQL and the dashboard: web/ (npm, lock file) built by vite into the package's
# web/static, which is committed; only needed after changing web/ or its dependencies.
# `npm install` keeps to package-lock.json: `npm ci` refuses the lock when the registry has no
# copy of a platform-only optional dependency (vite's napi-windows-process-start-time).
web:
	cd web && npm install --no-audit --no-fund && git diff --exit-code package-lock.json && npm run build

clean:
	rm -rf $(VENV) .studio studio.db studio.db-wal studio.db-shm .pytest_cache .mypy_cache .ruff_cache
