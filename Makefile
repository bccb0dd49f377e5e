# Two commands matter: `make run` and `make test`. See README.md.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-kafka bench lint typecheck rebuild clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Broker on 9092, SMTP on 1025, the five services on 8001-8005, SQLite stores under var/.
run: $(STAMP)
	$(PY) -m devtools.devstack

## The whole suite against real PostgreSQL (PG_DSN when a server answers there, else a
## throwaway cluster from the machine's binaries) and a real Kafka-protocol broker.
test: $(STAMP)
	$(PY) -m devtools.postgres -- $(PY) -m pytest $(PYTEST_ARGS)

## Every test that uses the broker (marker `bus`), on a real Apache Kafka 4.x broker
## (devtools/apache_kafka.py: jars from Maven Central, cached; Java 17+ and Maven).
test-kafka: $(STAMP)
	KAFKA_IMPL=apache $(PY) -m devtools.postgres -- $(PY) -m pytest -m bus $(PYTEST_ARGS)

## Benchmarks -> bench/results.json (and a table on stdout).
bench: $(STAMP)
	$(PY) -m devtools.postgres -- $(PY) -m bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check shared services devtools analytics tests bench
	$(VENV)/bin/ruff format --check shared services devtools analytics tests bench
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared services devtools analytics bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
