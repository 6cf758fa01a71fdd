# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

MODEL_DIR ?= var/models
WORLD_DIR ?= var/world

.PHONY: install run train-sample test lint pytest proto bench bench-train bench-serve bench-events clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Set up, generate the sample world and train if there is no model yet, then serve.
run: train-sample
	@echo
	@echo "Serving on localhost:50051 (Ctrl-C stops). From another terminal:"
	@echo "  .venv/bin/recsvc client recommend --customer C0000001 --limit 10"
	@echo "  .venv/bin/recsvc client similar --product P000001"
	@echo "  .venv/bin/recsvc client track --customer NEW1 --type purchase --product P000001"
	@echo "  .venv/bin/recsvc client offers --customer C0000001"
	@echo "  .venv/bin/recsvc client profile --customer C0000001"
	@echo "  grpcurl -plaintext -H \"authorization: Bearer \$$(cat var/dev-token)\" \\"
	@echo "    -d '{\"customer_id\":\"C0000001\",\"limit\":5}' localhost:50051 recsvc.v1.Recommender/RecommendProducts"
	@echo
	RECSVC_OFFERS=$${RECSVC_OFFERS:-examples/offers.yaml} $(BIN)/recsvc serve --model-dir $(MODEL_DIR)

train-sample: $(STAMP)
	test -f $(WORLD_DIR)/interactions.parquet || \
		$(BIN)/recsvc data synth --customers 20000 --products 2000 --seed 7 --out $(WORLD_DIR)
	test -f $(MODEL_DIR)/CURRENT || $(BIN)/recsvc train \
		--interactions $(WORLD_DIR)/interactions.parquet --catalog $(WORLD_DIR)/catalog.parquet \
		--customers $(WORLD_DIR)/customers.parquet --model-dir $(MODEL_DIR)
	$(BIN)/recsvc models list --model-dir $(MODEL_DIR)
	$(BIN)/recsvc features load --quiet --model-dir $(MODEL_DIR) \
		--interactions $(WORLD_DIR)/interactions.parquet --catalog $(WORLD_DIR)/catalog.parquet \
		--customers $(WORLD_DIR)/customers.parquet

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy recsvc training feature_store formats tests bench
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint pytest

# Regenerate recsvc/v1 from proto/ (tests/test_proto.py fails when they drift apart).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/recsvc/v1/recommender.proto

bench: bench-train bench-serve bench-events

bench-train: $(STAMP)
	$(BIN)/python -m bench.train_quality
	$(BIN)/python -m bench.train_scale
	$(BIN)/python -m bench.train_spark quality
	$(BIN)/python -m bench.train_spark scale

bench-serve: $(STAMP)
	$(BIN)/python -m bench.serve

# redis-benchmark (the raw SET rate the bulk load is compared with) is Debian's redis-tools.
bench-events: $(STAMP)
	@command -v redis-benchmark >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && apt-get install -y -q redis-tools; \
		else \
			echo "bench-events needs redis-benchmark: sudo apt-get install redis-tools"; exit 1; \
		fi; }
	$(BIN)/python -m bench.events

clean:
	rm -rf $(VENV) var build *.egg-info
