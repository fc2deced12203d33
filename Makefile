# One command each: `make demo` rehearses in the local sandbox, `make test` runs the whole suite.
# Both create .venv on a fresh clone and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: test lint typecheck unit docs demo clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q --cov --cov-report=term --cov-report=xml
	$(BIN)/coverage report --include='infra_pulumi/*' --fail-under=100

test: lint typecheck unit

docs: $(STAMP)
	$(BIN)/python -m migctl.cli.reference > docs/cli-reference.md

demo: $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml
