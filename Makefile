# Two commands for a new user: `make demo` (the taxi_tips DAG on the embedded defaults) and
# `make test`. Needs only Python 3.11 with pip; everything else installs from locks/ on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
RUFF_VERSION := 0.17.6
# the taxi sample ships inside this wheel (PyPI, Apache-2.0); its hash is checked on download
TFX_WHEEL := tfx-1.16.0-py3-none-any.whl
TFX_SHA256 := 967edcb295abd566e494f5dfe89810130ceb16180f34d0eb009b284a5ece22b8
DEMO_DATE ?= 2017-01-01

TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
TOOLS_STAMP := $(TOOLS)/.pip-$(PIP_VERSION)-uv-$(UV_VERSION)-ruff-$(RUFF_VERSION)
AF := .venv-airflow
ML := .venv-ml
DATA := .data

# The environment of every recipe (the one place it is set). Settings for pipeline_lib
# (PIPELINE_WAREHOUSE, PIPELINE_ARTIFACT_ROOT, ...) keep their defaults under .data/ unless set.
export UV_COMPILE_BYTECODE := 1
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__API__HOST := 127.0.0.1
# the embedded SQLite metadata database: lock waits and read-then-write transactions (pipeline_lib/airflow_sqlite.py)
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS := pipeline_lib.airflow_sqlite.CONNECT_ARGS
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC := pipeline_lib.airflow_sqlite.CONNECT_ARGS

.PHONY: env envs data airflow-init airflow demo lint test bench soak lock clean browser

# `eval "$$(make -s env)"` in bash: the variables exported above, for the airflow CLI by hand (README)
env:
	@for v in $$(sed -n 's/^export \([A-Za-z0-9_]*\) :=.*/\1/p' $(firstword $(MAKEFILE_LIST))); do \
		printf 'export %s=%q\n' "$$v" "$${!v}"; done

$(TOOLS_STAMP):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION) uv==$(UV_VERSION) ruff==$(RUFF_VERSION)
	rm -f $(TOOLS)/.pip-*-uv-*
	touch $@

# a venv is (re)synced when its lock or the package metadata changes
.venv-%/.synced: locks/%.lock pyproject.toml | $(TOOLS_STAMP)
	test -x .venv-$*/bin/python || $(UV) venv -q .venv-$* --python $(PYTHON)
	$(UV) pip sync -q --python .venv-$*/bin/python locks/$*.lock
	$(UV) pip install -q --python .venv-$*/bin/python --no-deps -e .
	touch $@

envs: $(AF)/.synced $(ML)/.synced

$(DATA)/downloads/$(TFX_WHEEL): | $(TOOLS_STAMP)
	$(TOOLS)/bin/pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version 3.10 --require-hashes -r <(echo "tfx==1.16.0 --hash=sha256:$(TFX_SHA256)") \
		-d $(DATA)/downloads

$(DATA)/warehouse.duckdb: $(DATA)/downloads/$(TFX_WHEEL) scripts/load_taxi_sample.py | $(AF)/.synced
	$(AF)/bin/python scripts/load_taxi_sample.py $< $@

data: $(DATA)/warehouse.duckdb

# migrated again after the Airflow environment changes (`db migrate` is idempotent)
$(AIRFLOW_HOME)/.migrated: $(AF)/.synced
	$(AF)/bin/airflow db migrate > /dev/null
	touch $@

airflow-init: $(AIRFLOW_HOME)/.migrated

# Airflow (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1:$(AIRFLOW_PORT) until Ctrl-C;
# it prints the login (user admin, generated password; README "Running Airflow")
AIRFLOW_PORT ?= 8080
airflow: envs data airflow-init
	AIRFLOW_PORT=$(AIRFLOW_PORT) scripts/airflow_local.sh

# the run's log goes to a file; the summary is printed whether the run passed or not
# (PIPELINE=taxi_trip_length or taxi_fare: another example pipeline)
PIPELINE ?= taxi_tips
DEMO_LOG = $(DATA)/demo-$(PIPELINE)-$(DEMO_DATE).log
demo: envs data airflow-init
	@echo "airflow dags test $(PIPELINE) $(DEMO_DATE) (log: $(DEMO_LOG))"
	@$(AF)/bin/python -m pipeline_lib.launchers warm > /dev/null
	@rc=0; $(AF)/bin/airflow dags test $(PIPELINE) $(DEMO_DATE) > $(DEMO_LOG) 2>&1 || rc=$$?; \
	if [ $$rc -ne 0 ]; then tail -n 40 $(DEMO_LOG); echo; fi; \
	$(AF)/bin/python -m pipeline_lib.report --pipeline $(PIPELINE) --date $(DEMO_DATE) || { r=$$?; [ $$rc -ne 0 ] || rc=$$r; }; \
	if [ $$rc -ne 0 ]; then echo "demo run failed (exit $$rc): see $(DEMO_LOG)"; fi; \
	exit $$rc

# the browser tests drive Debian's chromium through its chromium-driver (selenium comes from the Airflow lock)
browser:
	command -v chromium > /dev/null && command -v chromedriver > /dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null; }

# ruff's settings are in pyproject.toml; the tests start only when it finds nothing
lint: | $(TOOLS_STAMP)
	$(TOOLS)/bin/ruff check --quiet

test: lint envs data browser
	ml=0; $(ML)/bin/python -m pytest tests/ml -q -p no:cacheprovider || ml=$$?; \
	af=0; $(AF)/bin/python -m pytest tests/airflow -q -p no:cacheprovider || af=$$?; \
	echo "ML environment: exit $$ml; Airflow environment: exit $$af"; exit $$(( ml || af ))

BENCH_ROWS ?= 15002
bench: envs data airflow-init
	$(AF)/bin/python bench/pipeline_bench.py --rows $(BENCH_ROWS) --json $(DATA)/bench.json

# a season of daily runs through the real scheduler with a fault schedule and a scripted operator
# (bench/soak.py): per-day table and summary, $(SOAK_OUT)/soak.json and soak.md (default .data/soak/<UTC time>/)
DAYS ?= 5
PIPELINES ?= taxi_tips
SEASON ?= bench/soak/season-ci.yaml
SOAK_OUT ?=
soak: envs data
	$(AF)/bin/python bench/soak.py --days $(DAYS) --pipelines $(PIPELINES) --season $(SEASON) $(if $(SOAK_OUT),--out $(SOAK_OUT))

lock: | $(TOOLS_STAMP)
	$(UV) pip compile -q requirements.txt -o locks/airflow.lock --python-version 3.11
	$(UV) pip compile -q requirements-ml.txt -o locks/ml.lock --python-version 3.11

# the environments stay (rebuild one with `rm -rf .venv-ml && make envs`)
clean:
	rm -rf $(DATA) $(AIRFLOW_HOME)
