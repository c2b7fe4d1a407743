# Stevedore — the README's two commands are `make run` and `make test`; `make check` is the fast everyday loop.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
INSTALLED := $(VENV)/.installed

.PHONY: run test check lint typecheck venv system-deps bench clean

$(INSTALLED): setup.py requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade "pip>=23"
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt -e '.[testing]'
	@touch $@

venv: $(INSTALLED)

## Serve the registry on 127.0.0.1:$(PORT) with SQLite and a blob folder under ./var.
run: $(INSTALLED)
	@mkdir -p var && chmod 700 var
	$(BIN)/stevedore --config development.ini db upgrade
	@# The public URL makes the invite mails' links (never taken from a request's Host); set it yourself to override.
	STEVEDORE_PUBLIC_URL="$${STEVEDORE_PUBLIC_URL:-http://127.0.0.1:$(PORT)}" $(BIN)/pserve development.ini http_port=$(PORT)

## Everything: system packages the tests use, the venv, lint, types, and the whole suite.
test: $(INSTALLED) system-deps lint typecheck
	$(BIN)/pytest -p no:cacheprovider tests

## The fast loop: unit tests and webtest-level integration tests on SQLite (seconds).
check: $(INSTALLED) lint
	$(BIN)/pytest -p no:cacheprovider -q -m "not postgres and not clients and not server" tests

lint: $(INSTALLED)
	$(BIN)/ruff check src tests alembic benchmarks
	$(BIN)/ruff format --check src tests alembic benchmarks

typecheck: $(INSTALLED)
	$(BIN)/mypy

system-deps:
	bash scripts/install-system-deps.sh

## The speed race: Stevedore against CNCF Distribution and a bare WSGI app, with TARGETS (benchmarks/README.md;
## `$(BIN)/python -m benchmarks.throughput` is the older single-client push/pull table).
bench: $(INSTALLED) system-deps
	$(BIN)/python -m benchmarks.race

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
