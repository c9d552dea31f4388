# Two commands for a new user: `make demo` (the taxi_tips DAG on the embedded defaults) and
# `make test`. Needs only Python 3.11 with pip; everything else installs from locks/ on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
TFX_WHEEL := tfx-1.16.0-py3-none-any.whl
DEMO_DATE ?= 2017-01-01

TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
AF := .venv-airflow
ML := .venv-ml
DATA := .data

export UV_COMPILE_BYTECODE := 1
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins

.PHONY: envs data airflow-init demo test bench lock clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

# a venv is (re)synced when its lock or the package metadata changes
.venv-%/.synced: locks/%.lock pyproject.toml | $(UV)
	test -x .venv-$*/bin/python || $(UV) venv -q .venv-$* --python $(PYTHON)
	$(UV) pip sync -q --python .venv-$*/bin/python locks/$*.lock
	$(UV) pip install -q --python .venv-$*/bin/python --no-deps -e .
	touch $@

envs: $(AF)/.synced $(ML)/.synced

$(DATA)/downloads/$(TFX_WHEEL): | $(UV)
	$(TOOLS)/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.10 \
		tfx==1.16.0 -d $(DATA)/downloads

$(DATA)/warehouse.duckdb: $(DATA)/downloads/$(TFX_WHEEL) scripts/load_taxi_sample.py | $(AF)/.synced
	$(AF)/bin/python scripts/load_taxi_sample.py $< $@

data: $(DATA)/warehouse.duckdb

$(AIRFLOW_HOME)/airflow.db: | $(AF)/.synced
	$(AF)/bin/airflow db migrate > /dev/null

airflow-init: $(AIRFLOW_HOME)/airflow.db

demo: envs data airflow-init
	$(AF)/bin/airflow dags test taxi_tips $(DEMO_DATE) > $(DATA)/demo-$(DEMO_DATE).log 2>&1 \
		|| { tail -n 40 $(DATA)/demo-$(DEMO_DATE).log; echo "demo run failed: see $(DATA)/demo-$(DEMO_DATE).log"; exit 1; }
	@$(AF)/bin/python -m pipeline_lib.report --pipeline taxi_tips --date $(DEMO_DATE)

test: envs data
	ml=0; $(ML)/bin/python -m pytest tests/ml -q -p no:cacheprovider || ml=$$?; \
	af=0; $(AF)/bin/python -m pytest tests/airflow -q -p no:cacheprovider || af=$$?; \
	echo "ML environment: exit $$ml; Airflow environment: exit $$af"; exit $$(( ml || af ))

BENCH_ROWS ?= 15002
bench: envs data airflow-init
	$(AF)/bin/python bench/pipeline_bench.py --rows $(BENCH_ROWS) --json $(DATA)/bench.json

lock: | $(UV)
	$(UV) pip compile -q requirements.txt -o locks/airflow.lock --python-version 3.11
	$(UV) pip compile -q requirements-ml.txt -o locks/ml.lock --python-version 3.11

clean:
	rm -rf $(DATA) $(AIRFLOW_HOME)
