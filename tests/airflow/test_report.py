"""`report` says the outcome in words: PUSHED, or NOT PUSHED with the reason (the quality gate's
refusal: exit 0; a failed step with the first line of its error, or blocking anomalies: exit 1)."""

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


def test_a_step_that_succeeds_again_clears_its_error():
    from pipeline_lib.cli import record_error

    out = artifacts.step_dir("taxi_tips", DAY, "train")
    record_error(out, "RuntimeError: out of memory")
    assert (out.parent / ".train.error").read_text() == "RuntimeError: out of memory"
    record_error(out, None)
    assert not (out.parent / ".train.error").exists()
