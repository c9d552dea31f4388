"""A wrong pipeline config fails with a message naming the file and the field."""

from __future__ import annotations

import pytest
import yaml
from pipeline_fixtures import TAXI_DIR, write_pipeline

from pipeline_lib.config import ConfigError, load_config


def test_the_example_config_is_valid():
    config = load_config(TAXI_DIR / "pipeline.yaml")
    assert config.name == "taxi_tips"
    assert config.raw_columns()[-2:] == ["tips", "trip_start_timestamp"]


@pytest.mark.parametrize("schedule, span_days, expected", [
    ("@weekly", None, 7), ("@daily", None, 1), ("0 6 * * *", None, 1), ("0 6 * * *", 3, 3), (None, 14, 14)])
def test_a_span_is_what_a_run_adds(tmp_path, schedule, span_days, expected):
    source = {"span_days": span_days} if span_days else {}
    config = load_config(write_pipeline(tmp_path, {"schedule": schedule, "source": source}))
    assert config.source.span_days == expected


@pytest.mark.parametrize("overrides, message", [
    ({"source": {"window_days": 0}}, "field 'source.window_days': Input should be greater than 0"),
    ({"source": {"table": "taxi; DROP TABLE x"}}, "field 'source.table': String should match pattern"),
    ({"sauce": {}}, "field 'sauce': Extra inputs are not permitted"),
    ({"name": "Taxi Tips"}, "field 'name': String should match pattern"),
    ({"label": {"raw_columns": []}}, "field 'label.raw_columns': List should have at least 1 item"),
    ({"training": {"steps": "many"}}, "field 'training.steps': Input should be a valid integer"),
    ({"evaluation": {"thresholds": {"Precision": {"lower_bound": 0.5}}}},
     "field 'evaluation.thresholds': names metrics not in `metrics`: ['Precision']"),
    ({"evaluation": {"thresholds": {"BinaryAccuracy": {"change_direction": "higher_is_better"}}}},
     "field 'evaluation.thresholds.BinaryAccuracy': Value error, change_direction goes with change_absolute or change_relative"),
    # metrics that do not fit the label's task are refused at parse time
    ({"label": {"task": "multiclass"}},
     "field 'evaluation.metrics': ['BinaryAccuracy', 'AUC'] do not fit a multiclass label"),
    ({"label": {"task": "regression"}, "evaluation": {"metrics": ["ExampleCount", "SparseCategoricalAccuracy"]}},
     "field 'evaluation.metrics': ['SparseCategoricalAccuracy'] do not fit a regression label"),
    ({"label": {"task": "regression"}, "evaluation": {"metrics": ["MeanSquaredError"], "thresholds": {
        "BinaryAccuracy": {"lower_bound": 0.5}}}},
     "field 'evaluation.thresholds': ['AUC', 'BinaryAccuracy'] do not fit a regression label"),
    ({"label": {"task": "ranking"}}, "field 'label.task': Input should be 'binary', 'multiclass' or 'regression'"),
    ({"features": {"vocabulary": ["fare"]}}, "features listed under more than one kind: ['fare']"),
    ({"module": {"file": "missing.py"}}, "field 'module.file': no such file"),
    ({"validation": {"features": {"fares": {"drift": 0.1}}}},
     "field 'validation.features': names columns the pipeline does not read: ['fares']"),
    ({"validation": {"severity": "fatal"}}, "field 'validation.severity.schema': Input should be 'blocking' or 'warning'"),
    ({"validation": {"severity": {"drfit": "warning"}}},
     "field 'validation.severity': ['drfit'] are neither kind groups ['data', 'drift', 'label', 'schema', 'skew'] nor kinds"),
    ({"validation": {"features": {"fare": {"drift": 0}}}},
     "field 'validation.features.fare.drift': Input should be greater than 0"),
    ({"split": {"key": ["trip_id"]}}, "field 'split.key': names columns the pipeline does not read: ['trip_id']"),
    ({"validation": {"duplicates": {"key": ["trip_id"]}}},
     "field 'validation.duplicates.key': names columns the pipeline does not read: ['trip_id']"),
    ({"source": {"span_days": 1}},
     "field 'source.span_days': is 1 but a @weekly schedule adds a 7-day span each run: set span_days: 7"),
])
def test_a_bad_field_is_named(tmp_path, overrides, message):
    path = write_pipeline(tmp_path, overrides)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("task, metrics, threshold", [
    ("binary", ["ExampleCount", "BinaryAccuracy", "AUC"], "AUC"),
    ("multiclass", ["ExampleCount", "SparseCategoricalAccuracy", "Precision", "Recall"], "SparseCategoricalAccuracy"),
    ("regression", ["ExampleCount", "MeanSquaredError", "MeanAbsoluteError"], "MeanSquaredError"),
])
def test_metrics_and_thresholds_default_per_task(tmp_path, task, metrics, threshold):
    path = write_pipeline(tmp_path, {"label": {"task": task}})
    raw = yaml.safe_load(path.read_text())
    del raw["evaluation"]
    path.write_text(yaml.safe_dump(raw))
    evaluation = load_config(path).evaluation
    assert evaluation.metrics == metrics
    assert list(evaluation.thresholds) == [threshold]


def test_a_missing_required_section_is_named(tmp_path):
    path = write_pipeline(tmp_path)
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("start_date")))
    with pytest.raises(ConfigError, match="field 'start_date': Field required"):
        load_config(path)


def _errors(path) -> list[str]:
    """The lines of the ConfigError that loading `path` raises, one per mistake."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    header, *lines = str(err.value).splitlines()
    assert header == f"{path}: invalid pipeline config"
    return lines


def test_every_mistake_is_reported_at_once(tmp_path):
    """An unknown field no longer hides a metric that does not fit the label, nor the checks
    across sections or against the module file and the schema: one message names them all."""
    path = write_pipeline(tmp_path, {
        "training": {"stepz": 300},  # an unknown field
        "label": {"task": "regression"},  # the config's AUC and BinaryAccuracy do not fit
        "features": {"categorical": ["trip_start_hour", "pickup_community"], "vocabulary": ["payment_type", "fare"]},
        "split": {"key": ["trip_id"]},
        "module": {"file": "missing.py"},
        "validation": {"duplicates": {"key": ["trip_id"]}},
    })
    lines = _errors(path)
    for expected in [
        "field 'training.stepz': Extra inputs are not permitted",
        "field 'features': Value error, features listed under more than one kind: ['fare']",
        "field 'evaluation.metrics': ['BinaryAccuracy', 'AUC'] do not fit a regression label",
        "field 'evaluation.thresholds': ['AUC', 'BinaryAccuracy'] do not fit a regression label",
    ]:
        assert any(line.startswith(f"  {expected}") for line in lines), (expected, lines)
    assert sum("field 'features" in line for line in lines) == 1, "no column check on features that failed"

    # the features valid: the columns they name are checked against split, validation and the schema
    path = write_pipeline(tmp_path / "columns", {
        "training": {"stepz": 300}, "label": {"task": "regression"},
        "features": {"categorical": ["trip_start_hour", "pickup_community"]},  # trip_start_month left out
        "split": {"key": ["trip_id"]}, "module": {"file": "missing.py"}, "validation": {"duplicates": {"key": ["trip_id"]}},
    })
    lines = _errors(path)
    assert lines[0] == "  field 'training.stepz': Extra inputs are not permitted"
    assert lines[-5:] == [
        "  field 'split.key': names columns the pipeline does not read: ['trip_id']",
        "  field 'validation.features': names columns the pipeline does not read: ['trip_start_month']",
        "  field 'validation.duplicates.key': names columns the pipeline does not read: ['trip_id']",
        f"  field 'module.file': no such file {path.parent / 'missing.py'}",
        f"  field 'features.categorical': 'pickup_community' has no feature in the schema {path.parent / 'schema.pbtxt'}"]


def test_a_checks_findings_are_reported_together(tmp_path):
    """Every finding of one check, each with its field: the evaluation against label.task, the
    launcher, the severity tables."""
    lines = _errors(write_pipeline(tmp_path, {
        "evaluation": {"metrics": ["ExampleCount", "AUC", "SparseCategoricalAccuracy"], "top_k": [2]},
        "launcher": {"kind": "kubernetes", "steps": {"trian": "local"}},
        "validation": {"severity": {"drfit": "warning"}, "features": {"fare": {"severity": {"skwe": "warning"}}}}}))
    fields = [line.split("'")[1] for line in lines]
    assert fields == ["evaluation.metrics", "evaluation.thresholds", "evaluation.top_k", "launcher", "launcher",
                      "validation.severity", "validation.features.fare.severity"], lines
    assert "['SparseCategoricalAccuracy'] do not fit a binary label" in lines[0]
    assert lines[1].endswith("names metrics not in `metrics`: ['BinaryAccuracy']")
    assert "steps names unknown steps ['trian']" in lines[3]
    assert "launcher.kind is kubernetes but the launcher.kubernetes section is missing" in lines[4]
