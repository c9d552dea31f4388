"""Preflight: config and module mistakes found in a second, before ingest moves any data; a column
the curated schema knows but the table lost is left to validate (a data change, not a mistake)."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from conftest import SPAN, run_step
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, preflight
from pipeline_lib.config import ConfigError, load_config


def _config(env, name, overrides=None, module_edit=None, check_schema=True):
    path = write_pipeline(env / "pipelines", {"name": name, **(overrides or {})})
    if module_edit:
        module = path.parent / "taxi_tips.py"
        module.write_text(module_edit(module.read_text()))
    return load_config(path, check_schema=check_schema)


def test_the_example_pipeline_passes(config):
    report = preflight.check(config)
    assert report.errors == [] and report.warnings == []


def test_a_misspelled_column_is_named_with_the_tables_columns(env):
    typo = {"features": {"categorical": ["trip_start_hour", "trip_start_month", "pickup_community"]}}
    with pytest.raises(ConfigError, match="field 'features.categorical': 'pickup_community' has no feature in the schema"):
        _config(env, "typo", typo)  # what DAG parsing says
    errors = preflight.run(_config(env, "typo", typo, check_schema=False)).errors
    assert errors == [("field 'features.categorical': 'pickup_community' is not in the schema (schema.pbtxt) nor in "
                      "table taxi_trips; the table's columns: pickup_community_area, fare, trip_start_month, "
                      "trip_start_hour, trip_start_day, trip_start_timestamp, pickup_latitude, pickup_longitude, "
                      "dropoff_latitude, dropoff_longitude, trip_miles, pickup_census_tract, dropoff_census_tract, "
                      "payment_type, company, trip_seconds, dropoff_community_area, tips")]


def test_before_the_first_run_ingest_stops_on_a_misspelled_column_before_any_data_moves(env):
    """No schema yet (the first run infers it): ingest's preflight checks the config against the table."""
    config = _config(env, "first_typo", {"features": {"categorical": ["trip_start_hour", "trip_start_month", "pickup_community"]},
                                         "validation": {"schema_file": "not_yet.pbtxt"}})
    with pytest.raises(preflight.PreflightError) as e:
        run_step(config, "ingest")
    assert "field 'features.categorical': 'pickup_community' is not in table taxi_trips; the table's columns: " in str(e.value)
    assert not artifacts.step_dir(config.name, SPAN, "ingest").exists()


def test_a_wrong_function_signature_and_an_unlisted_input(env):
    swapped = _config(env, "signature", module_edit=lambda src: src.replace(
        "def preprocessing_fn(inputs, config)", "def preprocessing_fn(config, inputs)"))
    errors = preflight.run(swapped).errors
    assert len(errors) == 1 and errors[0].startswith(
        "field 'module.preprocessing_fn': preprocessing_fn(config, inputs) in taxi_tips.py line"), errors
    assert errors[0].endswith("must take (inputs, config)")
    unlisted = _config(env, "unlisted", module_edit=lambda src: src.replace('inputs["tips"]', 'inputs["tip"]'))
    errors = preflight.run(unlisted).errors
    assert len(errors) == 1 and errors[0].startswith(
        "field 'module.preprocessing_fn': preprocessing_fn reads inputs['tip'] in taxi_tips.py"), errors
    missing = _config(env, "missing_fn", {"module": {"file": "taxi_tips.py", "preprocessing_fn": "preprocess"}})
    assert preflight.run(missing).errors == ["field 'module.preprocessing_fn': taxi_tips.py defines no function preprocess"]


def test_a_missing_label_column(env):
    config = _config(env, "no_label", {"label": {"key": "big_tipper", "raw_columns": ["tip_amount"]}}, check_schema=False)
    errors = preflight.run(config).errors
    assert len(errors) == 2, errors  # the config's label column, and the module still reading the old one
    assert errors[0].startswith("field 'module.preprocessing_fn': preprocessing_fn reads inputs['tips']")
    assert errors[1].startswith("field 'label.raw_columns': 'tip_amount' is not in the schema")


def test_wrong_kinds_and_timestamp_unit(env):
    config = _config(env, "kinds", {"features": {"categorical": ["trip_start_hour", "trip_start_month", "payment_type"],
                                                 "vocabulary": ["company"]},
                                    "source": {"timestamp_unit": "timestamp"}}, check_schema=False)
    errors = preflight.run(config).errors
    assert "field 'features.categorical': 'payment_type' is BYTES in the schema, a categorical column takes INT" in errors
    assert any(e.startswith("field 'source.timestamp_unit': 'trip_start_timestamp' is BIGINT (INT) in table taxi_trips")
               for e in errors)


def test_a_number_column_read_as_text_is_named_by_its_table_type_with_the_likely_cause(env, tmp_path):
    """Before the first run (no schema): a numeric column that the warehouse holds as VARCHAR because
    the file wrote NA for missing values, and one holding other text."""
    db = tmp_path / "na.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH '{env / 'warehouse.duckdb'}' AS src (READ_ONLY)")
        con.execute("CREATE TABLE taxi_trips AS SELECT * REPLACE (CASE WHEN company IS NULL THEN 'NA' ELSE fare::VARCHAR END AS fare, "
                    "CASE WHEN trip_miles > 5 THEN 'far' ELSE trip_miles::VARCHAR END AS trip_miles) FROM src.taxi_trips")
        missing_fares, far = con.execute("SELECT count(*) FILTER (fare = 'NA'), count(*) FILTER (trip_miles = 'far') "
                                         "FROM taxi_trips").fetchone()
    assert missing_fares and far
    config = _config(env, "na_text", {"source": {"database": str(db)}, "validation": {"schema_file": "not_yet.pbtxt"}},
                     check_schema=False)
    errors = preflight.run(config).errors
    assert errors == [
        (f"field 'features.numeric': 'trip_miles' is VARCHAR (BYTES) in table taxi_trips, a numeric column takes "
        f"FLOAT/INT: its values that are not numbers: 'far' ({far:,} rows)"),
        (f"field 'features.numeric': 'fare' is VARCHAR (BYTES) in table taxi_trips, a numeric column takes FLOAT/INT: "
        f"its values that are not numbers are 'NA' ({missing_fares:,} rows), a word for a missing value read as "
        "text; load the file again with `python -m pipeline_lib.warehouse load ... --null NA`")]


def test_a_column_the_schema_knows_but_the_table_lost_is_a_warning(env, tmp_path):
    db = tmp_path / "dropped.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH '{env / 'warehouse.duckdb'}' AS src (READ_ONLY)")
        con.execute("CREATE TABLE taxi_trips AS SELECT * EXCLUDE (company) FROM src.taxi_trips")
    config = _config(env, "dropped", {"source": {"database": str(db)}})
    report = preflight.check(config)
    assert report.warnings == [("field 'features.vocabulary': 'company' is not in table taxi_trips "
                               "(the schema has it: validate files the missing column as an anomaly)")]


def test_the_command(env, config):
    bad = _config(env, "cmd_typo", {"label": {"key": "big_tipper", "raw_columns": ["tip_amount"]}}, check_schema=False)
    run = subprocess.run([sys.executable, "-m", "pipeline_lib.preflight", "--config", str(bad.config_dir / "pipeline.yaml")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1 and "preflight found 2 mistake(s)" in run.stderr and "'tip_amount'" in run.stderr
    ok = subprocess.run([sys.executable, "-m", "pipeline_lib.preflight", "--config", str(config.config_dir / "pipeline.yaml")],
                        capture_output=True, text=True, check=True)
    assert ok.stdout.strip().endswith("preflight ok")
