# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

MODEL_DIR ?= var/models
WORLD_DIR ?= var/world

.PHONY: install run test lint pytest bench bench-train clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Generate the sample world, train, publish a bundle, print the evaluation table.
run: $(STAMP)
	test -f $(WORLD_DIR)/interactions.parquet || \
		$(BIN)/recsvc data synth --customers 20000 --products 2000 --seed 7 --out $(WORLD_DIR)
	$(BIN)/recsvc train --interactions $(WORLD_DIR)/interactions.parquet \
		--catalog $(WORLD_DIR)/catalog.parquet --model-dir $(MODEL_DIR)
	$(BIN)/recsvc models list --model-dir $(MODEL_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy recsvc training feature_store tests bench

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint pytest

bench: bench-train

bench-train: $(STAMP)
	$(BIN)/python -m bench.train_quality
	$(BIN)/python -m bench.train_scale

clean:
	rm -rf $(VENV) var build *.egg-info
