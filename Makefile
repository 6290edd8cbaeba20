# Two entry points for a newcomer: `make demo` and `make test`. Both build .venv from the
# project's own files; nothing needs installing by hand except Java 17+ for Spark.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

PEERS := benchmarks/.peers

.PHONY: demo test lint format dist clean check-java peers

check-java:
	@$(PYTHON) -m pipeline.java

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: check-java $(STAMP)
	$(BIN)/longmix demo --workdir demo

test: check-java $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

peers: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --target $(PEERS) -r benchmarks/peers.txt

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(PEERS) demo build dist .pytest_cache
