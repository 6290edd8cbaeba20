# Two entry points for a newcomer: `make demo` and `make test`. Both build .venv from the
# project's own files; nothing needs installing by hand except Java 17+ for Spark.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

PEERS := benchmarks/.peers
DIST ?= dist

.PHONY: demo test lint format dist dist-env clean check-java peers

check-java:
	@$(PYTHON) -m pipeline.java

$(STAMP): pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) scripts/install.sh $(VENV) train,test --editable
	touch $(STAMP)

demo: check-java $(STAMP)
	$(BIN)/longmix demo --workdir demo

test: check-java $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# What spark-submit ships to executors: the project as a wheel, for --py-files.
dist: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir $(DIST) .

# For clusters whose executors lack the dependencies: a fresh, non-editable environment
# packed with venv-pack, for --archives dist/longmix-env.tar.gz#env. What `prepare` needs
# only: no torch (validate, smoke and the trainer need the `train` extra).
dist-env: dist
	rm -rf build/env
	PYTHON=$(PYTHON) scripts/install.sh build/env
	build/env/bin/python -m pip install --quiet venv-pack==0.2.0
	build/env/bin/venv-pack --quiet --prefix build/env --output $(DIST)/longmix-env.tar.gz --force

peers: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --target $(PEERS) -r benchmarks/peers.txt

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(PEERS) demo build dist .pytest_cache
