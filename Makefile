# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

MODEL_DIR ?= var/models
WORLD_DIR ?= var/world

.PHONY: install browser run train-sample test lint pytest test-reliability audit proto bench \
	bench-train bench-serve bench-events bench-catalog bench-batch clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) browser

# The browser tests drive Debian's Chromium through Playwright (never `playwright install`,
# which would download a browser build of its own).
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && apt-get install -y -q chromium; \
		else \
			echo "the browser tests need Chromium: sudo apt-get install chromium"; exit 1; \
		fi; }

# Set up, generate the sample world and train if there is no model yet, then serve.
run: train-sample
	@echo
	@echo "Serving gRPC on localhost:50051, HTTP/JSON and the dashboard on"
	@echo "http://localhost:8080/dashboard (Ctrl-C stops). From another terminal:"
	@echo "  .venv/bin/recsvc client recommend --customer C0000001 --limit 10"
	@echo "  .venv/bin/recsvc client similar --product P000001"
	@echo "  .venv/bin/recsvc client track --customer NEW1 --type purchase --product P000001"
	@echo "  .venv/bin/recsvc client offers --customer C0000001"
	@echo "  .venv/bin/recsvc client update-product --product NEW1 --category coffee --title 'Cold brew'"
	@echo "  .venv/bin/recsvc client trending --limit 5"
	@echo "  .venv/bin/recsvc client profile --customer C0000001"
	@echo "  grpcurl -plaintext -H \"authorization: Bearer \$$(cat var/dev-token)\" \\"
	@echo "    -d '{\"customer_id\":\"C0000001\",\"limit\":5}' localhost:50051 recsvc.v1.Recommender/RecommendProducts"
	@echo "  curl -H \"authorization: Bearer \$$(cat var/dev-token)\" -H 'content-type: application/json' \\"
	@echo "    -d '{\"customerId\":\"C0000001\",\"limit\":5}' localhost:8080/recsvc.v1.Recommender/RecommendProducts"
	@echo "  python3 -m http.server 8000 -d examples/web   # the example shop page (edit config.js)"
	@echo
	RECSVC_OFFERS=$${RECSVC_OFFERS:-examples/offers.yaml} \
	RECSVC_PROMOTIONS=$${RECSVC_PROMOTIONS:-examples/promotions.yaml} \
	RECSVC_CORS_ORIGINS=$${RECSVC_CORS_ORIGINS:-http://localhost:8000,http://127.0.0.1:8000} \
		$(BIN)/recsvc serve --model-dir $(MODEL_DIR)

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

pytest: $(STAMP) browser
	$(BIN)/pytest -q

test: lint pytest

# The whole reliability suite (docs/reliability.md): the fast part `make test` runs, plus the
# long part (a 10-minute soak, overload, 20 crash rounds, many more fuzzed requests): ~25 min.
test-reliability: $(STAMP)
	$(BIN)/pytest -q -m "" -rP --durations=15 tests/reliability

# Known vulnerabilities of the installed dependencies. Not part of `make test`: pip-audit asks
# PyPI's JSON API per version (or OSV), which needs the network. --strict fails when a
# dependency could not be checked, so an unreachable database is never reported as clean.
audit: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[audit]'
	$(BIN)/pip-audit --strict --skip-editable --local --progress-spinner off

# Regenerate recsvc/v1 from proto/ (tests/test_proto.py fails when they drift apart).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/recsvc/v1/recommender.proto

bench: bench-train bench-serve bench-events bench-catalog bench-batch

bench-train: $(STAMP)
	$(BIN)/python -m bench.train_quality
	$(BIN)/python -m bench.train_scale
	$(BIN)/python -m bench.train_spark quality
	$(BIN)/python -m bench.train_spark scale

# RecommendProducts at 100k and 1M products, then every serving RPC beside the empty RPC
# (health Check) with the feature store on (issue 13).
bench-serve: $(STAMP)
	$(BIN)/python -m bench.serve
	$(BIN)/python -m bench.serve_rpcs

# Products without history (MovieLens-100k, 10% hidden) and the cost of exploration and promotions.
bench-catalog: $(STAMP)
	$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.levers_latency

# redis-benchmark (the raw SET rate the bulk load is compared with) is Debian's redis-tools.
bench-events: $(STAMP)
	@command -v redis-benchmark >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && apt-get install -y -q redis-tools; \
		else \
			echo "bench-events needs redis-benchmark: sudo apt-get install redis-tools"; exit 1; \
		fi; }
	$(BIN)/python -m bench.events

# recommend-batch for 1M customers x 20 products (builds the world and bundle once).
bench-batch: $(STAMP)
	$(BIN)/python -m bench.batch

clean:
	rm -rf $(VENV) var build *.egg-info
