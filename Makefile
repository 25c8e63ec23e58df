# Both entry points bootstrap .venv from scratch on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck layers unit demo bench e2e clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts e2e
	$(BIN)/ruff format --check src tests benchmarks scripts e2e

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck layers unit

demo: $(STAMP)
	$(BIN)/confnode demo

# Real Kubernetes components, etcd and third-party clients (needs Go and Cargo; see e2e/README.md).
e2e: $(STAMP)
	bash e2e/build.sh
	CONFNODE_E2E=1 $(BIN)/pytest e2e

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV)
