# Every target creates and uses .venv itself, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= 1
PORT ?= 8080
RUNS ?= 3
PYSPARK ?= 4.0.1
BENCH_VENV := .venv-bench

.PHONY: demo test test-fast test-all lint format bench bench-compare airflow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,kafka,s3,export,airflow,spark]"
	$(BIN)/python -m compileall -q src  # pip compiles what it installs, not an editable source
	touch $(STAMP)

demo: $(STAMP)  ## generate scale-$(SCALE) data and run the whole pipeline on embedded defaults
	$(BIN)/medallion demo --scale $(SCALE)

test: $(STAMP)  ## lint, type-check and run every test tier
	$(BIN)/ruff check src tests dags bench
	$(BIN)/ruff format --check src tests dags bench
	$(BIN)/mypy src
	$(BIN)/pytest -q -m "not soak"

test-fast: $(STAMP)  ## lint, type-check and the tests not marked slow (no whole-pipeline e2e or model test)
	$(BIN)/ruff check src tests dags bench
	$(BIN)/ruff format --check src tests dags bench
	$(BIN)/mypy src
	$(BIN)/pytest -q -m "not slow and not soak"

test-all: $(STAMP)  ## every test, soak ones too, the model-based property test 10x longer
	MEDALLION_PROPERTY_EXAMPLES=300 $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests dags bench
	$(BIN)/ruff format --check src tests dags bench
	$(BIN)/mypy src

format: $(STAMP)
	$(BIN)/ruff format src tests dags bench
	$(BIN)/ruff check --fix src tests dags bench

bench: $(STAMP)  ## time and peak memory of each stage at SCALE, RUNS times (JSON and SVG charts in bench/)
	$(BIN)/medallion bench --scale $(SCALE) --runs $(RUNS) --out bench/scale-$(SCALE).json

$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet "pyspark[sql]==$(PYSPARK)"
	touch $@

bench-compare: $(STAMP) $(BENCH_VENV)/.installed  ## medallion bench and the PySpark local[2] baseline side by side (needs Java 17; not in make test)
	$(BIN)/medallion bench --scale $(SCALE) --runs $(RUNS) --out bench/scale-$(SCALE).json
	$(BENCH_VENV)/bin/python bench/pyspark_baseline.py --scale $(SCALE) --runs $(RUNS) \
		--medallion $(BIN)/medallion --out bench/spark-scale-$(SCALE).json
	$(BIN)/python bench/compare.py bench/scale-$(SCALE).json bench/spark-scale-$(SCALE).json \
		--out bench/compare-scale-$(SCALE)

airflow: $(STAMP)  ## Airflow standalone on 127.0.0.1:$(PORT) with dags/ (prints the URL and the password file)
	$(BIN)/medallion airflow standalone --port $(PORT) --dags-folder dags

clean:
	rm -rf $(VENV) $(BENCH_VENV) medallion_home .pytest_cache .mypy_cache .ruff_cache
