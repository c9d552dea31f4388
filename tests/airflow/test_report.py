"""`report` says the outcome in words: PUSHED, or NOT PUSHED with the reason (the quality gate's
refusal: exit 0; a failed step with the first line of its error, blocking anomalies, or the span's
data that never arrived: exit 1), and counts the findings of validate and of the label check."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline_lib import artifacts, report

DAY = dt.date(2017, 1, 1)


def write(step: str, result: dict) -> None:
    folder = artifacts.step_dir("taxi_tips", DAY, step)
    folder.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(folder / artifacts.RESULT_FILENAME, result)


INGEST = {"window": {"start": "2016-12-25T00:00:00", "end": "2017-01-01T00:00:00"}, "rows": {"train": 8, "eval": 2},
          "span": "2016-12-25", "spans": [{"span": "2016-12-25", "rows": {"train": 8, "eval": 2}}],
          "ingested": ["2016-12-25"]}


def validated(*anomalies: dict) -> None:
    write("ingest", INGEST)
    write("validate", {"anomalies": list(anomalies)})


@pytest.fixture(autouse=True)
def artifact_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path))


def test_a_refused_push_is_a_normal_outcome():
    validated()
    write("push", {"pushed": False, "version": 3, "path": None, "reason": "not blessed: auc = 0.51 fails lower bound 0.6"})
    text, failed = report.summary("taxi_tips", DAY)
    assert not failed
    assert text.endswith("NOT PUSHED (the quality gate refused it; serving stays at version 3): "
                         "not blessed: auc = 0.51 fails lower bound 0.6")
    write("push", {"pushed": False, "version": None, "path": None, "reason": "not blessed"})
    text, _ = report.summary("taxi_tips", DAY)
    assert text.endswith("NOT PUSHED (the quality gate refused it; no model serves yet): not blessed"), \
        "a refused first model leaves nothing serving, and says so"
    assert "  pushed     no, no model serves yet: not blessed" in text


def test_a_failed_step_shows_the_first_line_of_its_error_and_fails_the_report(capsys, monkeypatch):
    validated()
    write("transform", {"rows": {}})  # an earlier try's result; the last try failed
    (artifacts.run_dir("taxi_tips", DAY) / ".transform.error").write_text(
        "ValueError: preprocessing_fn returned no 'big_tipper'\nTraceback line 2\n")
    text, failed = report.summary("taxi_tips", DAY)
    assert failed
    assert "  transform  FAILED: ValueError: preprocessing_fn returned no 'big_tipper'" in text
    assert "  train      did not run" in text
    assert text.endswith("NOT PUSHED: transform failed: ValueError: preprocessing_fn returned no 'big_tipper'")
    monkeypatch.setattr("sys.argv", ["report", "--pipeline", "taxi_tips", "--date", str(DAY)])
    with pytest.raises(SystemExit) as exit:
        report.main()
    assert exit.value.code == 1 and "NOT PUSHED" in capsys.readouterr().out


def test_an_error_whose_first_line_only_announces_it_shows_its_last_line_too():
    error = "ValueError: in user code:\n\n    File \"training.py\", line 1439\n\n    ValueError: Missing data for input \"x\"\n"
    assert report.first_line(error) == 'ValueError: in user code: ... ValueError: Missing data for input "x"'


def test_blocking_anomalies_are_named():
    validated({"severity": "blocking", "spans": ["2016-12-25"], "feature": "payment_type", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
               "description": "Unexpected string values"},
              {"severity": "warning", "spans": ["2016-12-25"], "feature": "company", "kind": "DRIFT", "description": "drift"})
    text, failed = report.summary("taxi_tips", DAY)
    assert failed
    assert "NOT PUSHED: blocked by anomalies payment_type (ENUM_TYPE_UNEXPECTED_STRING_VALUES)" in text
    assert "company" not in text.splitlines()[-1]
    artifacts.write_json(artifacts.filed_anomalies_path("taxi_tips", DAY, "validate"), [  # as file_anomalies writes it
        {"id": 7, "feature": "payment_type", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "severity": "blocking", "status": "open"},
        {"id": 8, "feature": "company", "kind": "DRIFT", "severity": "warning", "status": "open"}])
    text, _ = report.summary("taxi_tips", DAY)
    assert text.endswith("NOT PUSHED: blocked by anomalies #7 payment_type (ENUM_TYPE_UNEXPECTED_STRING_VALUES) "
                         "(python -m pipeline_lib.anomalies show ID)")


def test_the_anomalies_line_counts_the_label_checks_findings_too():
    drift = {"severity": "warning", "spans": ["2016-12-25"], "feature": "company", "kind": "DRIFT", "description": "drift"}
    validated(drift)
    text, _ = report.summary("taxi_tips", DAY)
    assert "  anomalies  1 (1 from validate)" in text.splitlines()
    shift = {"severity": "blocking", "spans": ["2016-12-18", "2016-12-25"], "feature": "big_tipper", "kind": "LABEL_SHIFT",
             "description": "span 2016-12-25: big_tipper's class shares moved (also in span 2016-12-18)"}
    write("transform", {"spans": INGEST["spans"], "excluded": [], "anomalies": [shift],
                        "analysis": {"read_spans": 1, "read_rows": 8, "cached_spans": 0}})
    text, failed = report.summary("taxi_tips", DAY)
    lines = text.splitlines()
    assert "  anomalies  2 (1 from validate, 1 from the label check)" in lines
    assert "    - [warning] company: DRIFT: drift" in lines
    assert "    - [blocking] big_tipper: LABEL_SHIFT: span 2016-12-25: big_tipper's class shares moved (also in span " \
           "2016-12-18)" in lines
    assert failed and lines[-1] == "NOT PUSHED: blocked by anomalies big_tipper (LABEL_SHIFT) (python -m pipeline_lib.anomalies show ID)"


@pytest.mark.usefixtures("airflow_db")
def test_a_span_whose_data_never_arrived_names_its_no_data_record(isolated):
    """The run's report names the NO_DATA record the sensor's failure filed, with what it says."""
    from pipeline_fixtures import write_pipeline
    from pipeline_ops.dag_factory import build_dag

    from pipeline_lib.anomalies.tracker import Tracker

    dag = build_dag(write_pipeline(isolated / "pipelines"))
    sensor = dag.get_task("wait_for_data")
    sensor.mode, sensor.poke_interval, sensor.timeout = "poke", 0.2, 1
    day = dt.date(2030, 1, 1)
    dag.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    (record,) = Tracker().list(pipeline="taxi_tips")
    assert record["kind"] == "NO_DATA" and record["description"].startswith(f"no data arrived for span {day}")
    text, failed = report.summary("taxi_tips", day)
    assert failed and "stopped after" not in text
    assert text.splitlines()[-1] == (f"NOT PUSHED: anomaly #{record['id']} (data) (NO_DATA): {record['description']} "
                                     "(python -m pipeline_lib.anomalies show ID)")


def test_a_step_that_succeeds_again_clears_its_error():
    from pipeline_lib.cli import record_error

    out = artifacts.step_dir("taxi_tips", DAY, "train")
    record_error(out, "RuntimeError: out of memory")
    assert (out.parent / ".train.error").read_text() == "RuntimeError: out of memory"
    record_error(out, None)
    assert not (out.parent / ".train.error").exists()
