# The two set-up commands of the README: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench serve sandbox clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/ghl-bridge demo

test: lint typecheck pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: $(INSTALLED)
	$(BIN)/pytest

# Benchmarks against both simulators on loopback; QUICK=1 for the small, < 60 s version.
bench: $(INSTALLED)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

serve: $(INSTALLED)
	$(BIN)/ghl-bridge serve

sandbox: $(INSTALLED)
	$(BIN)/ghl-bridge sandbox

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
