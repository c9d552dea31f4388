"""The taxi pipeline through Airflow (dag.test), real steps in the ML environment: run 1 (a first
run: every span of its window) pushes version 1; run 2, the next week's (one new span, the rest
kept), held to a threshold no model meets, is refused and serving stays at version 1."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, serving, settings

DAY1 = dt.datetime(2016, 12, 25, tzinfo=dt.UTC)  # a Sunday: taxi_tips is @weekly
SMALL = {"start_date": "2016-01-03", "source": {"window_days": 365}, "training": {"steps": 300}}

PREDICT = """
import json, struct, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(sys.argv[2]).take(8)]
for e in examples:
    del e.features.feature["tips"]
out = model.signatures["serving_default"](examples=tf.constant([e.SerializeToString() for e in examples]))
print(json.dumps(out["outputs"].numpy().ravel().tolist()))
"""


def run_dag(config_path: Path, logical_date: dt.datetime):
    from pipeline_ops.dag_factory import build_dag

    run = build_dag(config_path).test(logical_date=logical_date)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def step_result(config_name: str, date: dt.datetime, step: str) -> dict:
    return artifacts.read_result(artifacts.step_dir(config_name, date.date(), step))


@pytest.mark.usefixtures("airflow_db")
def test_taxi_pipeline_pushes_a_blessed_model_then_refuses_a_worse_one(isolated):
    config_path = write_pipeline(isolated / "pipelines", SMALL)

    run1, states = run_dag(config_path, DAY1)
    assert run1.state == "success", states
    assert set(states.values()) == {"success"}
    validate = step_result("taxi_tips", DAY1, "validate")
    assert Path(validate["statistics"]).is_file(), "the new span's statistics"
    assert Path(validate["schema"]).is_file() and not validate["schema_inferred"], "the curated schema"
    assert validate["anomalies"] == [], "clean data passes the curated schema"
    transform = step_result("taxi_tips", DAY1, "transform")
    assert (Path(transform["transform_graph"]) / "transform_fn" / "saved_model.pb").is_file()
    evaluate = step_result("taxi_tips", DAY1, "evaluate")
    assert Path(evaluate["eval_result"]).is_dir() and Path(evaluate["blessing"]).is_file()
    assert evaluate["blessed"] is True
    push = step_result("taxi_tips", DAY1, "push")
    model_dir = settings.serving_root() / "taxi_tips"
    assert push["version"] == 1 and serving.versions(model_dir) == [1]
    assert serving.record(model_dir, 1)["run_id"] == run1.run_id
    assert step_result("taxi_tips", DAY1, "infra_validate")["latency_ms"]["single"]["p99"] > 0

    ingested = step_result("taxi_tips", DAY1, "ingest")["spans"]
    eval_file = next(Path(s["path"]) / "eval" / "data-00000.tfrecord" for s in ingested if s["rows"]["eval"] >= 8)
    predicted = subprocess.run([str(settings.ml_python()), "-c", PREDICT, str(model_dir / "1"), str(eval_file)],
                               capture_output=True, text=True, check=True)
    probabilities = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert len(probabilities) == 8 and all(0.0 <= p <= 1.0 for p in probabilities)

    write_pipeline(isolated / "pipelines", {**SMALL, "evaluation": {"thresholds": {"AUC": {"lower_bound": 0.999}}}})
    day2 = DAY1 + dt.timedelta(days=7)
    run2, states = run_dag(config_path, day2)
    assert run2.state == "success"
    assert states == {"wait_for_data": "success", "ingest": "success", "validate": "success",
                      "file_anomalies": "success", "wait_for_anomalies": "success", "transform": "success",
                      "file_transform_anomalies": "success", "wait_for_transform_anomalies": "success",
                      "train": "success", "evaluate": "success", "infra_validate": "success", "push": "skipped"}
    assert step_result("taxi_tips", day2, "ingest")["ingested"] == ["2016-12-25"], "one new span"
    assert step_result("taxi_tips", day2, "validate")["computed"] == ["2016-12-25"]
    assert step_result("taxi_tips", day2, "transform")["analysis"]["read_spans"] < 53 // 2
    verdict = step_result("taxi_tips", day2, "evaluate")
    assert verdict["blessed"] is False and verdict["baseline_version"] == 1
    assert any(r.startswith("auc = ") and r.endswith("fails lower bound 0.999") for r in verdict["reasons"]), verdict["reasons"]
    assert step_result("taxi_tips", day2, "push")["reason"].startswith("not blessed: auc = ")
    assert serving.versions(model_dir) == [1]
    assert (model_dir / "1" / "saved_model.pb").is_file()


@pytest.mark.usefixtures("airflow_db")
def test_a_failing_step_fails_its_task_with_the_steps_own_message(isolated):
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException
    from pipeline_ops.operators import IngestOperator

    config_path = write_pipeline(isolated / "pipelines", {"source": {"table": "no_such_table"}})
    with DAG("taxi_tips", schedule=None):
        task = IngestOperator(config_path=str(config_path))
    with pytest.raises(AirflowException, match=r"ingest failed: PreflightError: field 'source.table': no table 'no_such_table'"):
        task.execute({"logical_date": dt.datetime(2017, 1, 1, tzinfo=dt.UTC), "run_id": "manual", "params": {}})
    assert not artifacts.step_dir("taxi_tips", dt.date(2017, 1, 1), "ingest").exists()
