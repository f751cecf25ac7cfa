# The two set-up commands of the README: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-slow lint typecheck pytest bench serve sandbox clean

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

# Two worker processes (pytest-xdist): the tests mostly wait on their servers, so two share
# two cores well; `make test JOBS=0` runs them in this process.
JOBS ?= 2

pytest: $(INSTALLED)
	$(BIN)/pytest -m "not slow" $(if $(filter-out 0,$(JOBS)),-n $(JOBS))

# The tests that take minutes (three instances on PostgreSQL at HighLevel's real rate limit,
# the chaos test, a whole quick bench) and the end-to-end suite's run on PostgreSQL; CI runs
# them after `make test`.
test-slow: $(INSTALLED)
	$(BIN)/pytest -m slow

# Benchmarks against both simulators on loopback, SQLite and PostgreSQL side by side; QUICK=1
# for the small version (about 90 s).
bench: $(INSTALLED)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

serve: $(INSTALLED)
	$(BIN)/ghl-bridge serve

sandbox: $(INSTALLED)
	$(BIN)/ghl-bridge sandbox

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
