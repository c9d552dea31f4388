"""The three example pipelines (binary, multi-class, regression) at once under `make airflow`'s
real scheduler, as their daily schedules start them all at midnight: triggered together, each
succeeds, is blessed on its own task's metrics, pushes only its own model, and that model answers
TF Serving's classify or regress request; no lock error in the warehouse, the anomaly tracker or
the model repository (SQLite for Airflow and the tracker, as `make airflow` runs them)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from local_airflow import finished
from pipeline_fixtures import write_pipeline
from test_local_airflow import running_airflow, task_states

from pipeline_lib import serving, settings

START = dt.date(2016, 12, 1)
# end_date: unpausing starts no scheduled run of today (max_active_runs=1 would queue ours behind it)
COMMON = {"start_date": START.isoformat(), "end_date": START.isoformat(), "source": {"window_days": 90},
          "training": {"steps": 300}}
# small windows and short training: value bounds a short training meets, on each task's own metrics
PIPELINES = {
    "taxi_tips": {"evaluation": {"thresholds": {"AUC": {"lower_bound": 0.5}, "BinaryAccuracy": {"lower_bound": 0.5}}}},
    "taxi_trip_length": {"evaluation": {"thresholds": {"SparseCategoricalAccuracy": {"lower_bound": 0.5},
                                                       "Recall": {"lower_bound": 0.1}}}},
    "taxi_fare": {"evaluation": {"thresholds": {"MeanAbsoluteError": {"upper_bound": 8.0}}}},
}
JUDGED_ON = {"taxi_tips": ["auc", "binary_accuracy"], "taxi_trip_length": ["recall", "sparse_categorical_accuracy"],
             "taxi_fare": ["mean_absolute_error"]}
LOCKED = ("database is locked", "Could not set lock", "IO Error: Could not set lock")

ANSWER = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(sys.argv[2]).take(4)]
for e in examples:
    for column in sys.argv[4:]:
        del e.features.feature[column]
name = sys.argv[3]
answer = model.signatures[name](inputs=tf.constant([e.SerializeToString() for e in examples]))
print(json.dumps({k: v.numpy().tolist() for k, v in answer.items()}, default=lambda b: b.decode()))
"""


def answer(model_dir: Path, examples: Path, signature: str, label_columns: list[str]) -> dict:
    """The pushed model's answer to TF Serving's classify/regress request (`inputs`: serialized
    tf.Examples without the label's columns), in the ML environment."""
    proc = subprocess.run([str(settings.ml_python()), "-c", ANSWER, str(model_dir), str(examples), signature,
                           *label_columns], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_example_pipelines_run_at_once_and_each_pushes_its_own_model(tmp_path):
    for name, overrides in PIPELINES.items():
        write_pipeline(tmp_path / "pipelines", {**COMMON, **overrides}, source=REPO / "pipelines" / name)
    tracker = {"PIPELINE_ANOMALY_DB": f"sqlite:///{tmp_path / 'anomalies.db'}"}
    with running_airflow(tmp_path, "taxi_fare", tracker) as (api, env):
        for name in PIPELINES:
            api.wait(lambda name=name: api.call("GET", f"/api/v2/dags/{name}"), f"{name} to be parsed", 120)
            api.call("PATCH", f"/api/v2/dags/{name}", {"is_paused": False})
        runs = {name: api.call("POST", f"/api/v2/dags/{name}/dagRuns", {"logical_date": f"{START}T00:00:00Z"})
                for name in PIPELINES}
        done = {name: api.wait(lambda run=run, name=name: finished(api, run["dag_run_id"], name), f"{name}'s run", 1200)
                for name, run in runs.items()}
        states = {name: task_states(api, run["dag_run_id"], name) for name, run in runs.items()}
        # a REST trigger before start_date fails at once, saying why (Airflow would run no task)
        early = api.call("POST", "/api/v2/dags/taxi_fare/dagRuns",
                         {"logical_date": f"{START - dt.timedelta(days=1)}T00:00:00Z"})
        early_done = api.wait(lambda: finished(api, early["dag_run_id"], "taxi_fare"), "the early run", 300)
        early_states = task_states(api, early["dag_run_id"], "taxi_fare")
        logs = "\n".join(p.read_text(errors="replace") for p in Path(env["AIRFLOW_HOME"], "logs").rglob("*.log"))

    assert {name: run["state"] for name, run in done.items()} == dict.fromkeys(PIPELINES, "success"), states
    assert all(set(s.values()) == {"success"} for s in states.values()), states
    assert not [line for line in logs.splitlines() if any(m in line for m in LOCKED)]
    assert early_done["state"] == "failed" and early_states["wait_for_data"] == "failed"
    assert set(early_states.values()) == {"failed", "upstream_failed"}
    assert f"logical date {START - dt.timedelta(days=1)} is outside this pipeline's start_date {START}" in logs

    artifacts_root = tmp_path / "artifacts"
    assert sorted(p.name for p in (tmp_path / "serving").iterdir() if p.is_dir()) == sorted(PIPELINES)
    # the pushes at once each rewrote TF Serving's model config: the last one lists every model
    assert re.findall(r'name: "(\w+)"', (tmp_path / "serving" / serving.MODEL_CONFIG).read_text()) == sorted(PIPELINES)
    for name in PIPELINES:
        run_dir = artifacts_root / name / "runs" / str(START)
        evaluate = json.loads((run_dir / "evaluate" / "result.json").read_text())
        assert evaluate["blessed"] is True, evaluate["reasons"]
        assert sorted({v["metric"] for v in evaluate["thresholds"]}) == JUDGED_ON[name]
        model_dir = tmp_path / "serving" / name
        assert serving.versions(model_dir) == [1]
        assert serving.record(model_dir, 1)["run_id"] == runs[name]["dag_run_id"]
        report = subprocess.run([str(REPO / ".venv-airflow" / "bin" / "python"), "-m", "pipeline_lib.report",
                                 "--pipeline", name, "--date", str(START)], env=env, capture_output=True, text=True, check=False)
        assert report.returncode == 0 and report.stdout.strip().endswith("PUSHED version 1"), report.stdout

    def eval_file(name):  # a span of the window with four eval examples
        ingested = json.loads((artifacts_root / name / "runs" / str(START) / "ingest" / "result.json").read_text())
        return next(Path(s["path"]) / "eval" / "data-00000.tfrecord" for s in ingested["spans"] if s["rows"]["eval"] >= 4)

    tips = answer(tmp_path / "serving" / "taxi_tips" / "1", eval_file("taxi_tips"), "classify", ["tips"])
    assert tips["classes"] == [["0", "1"]] * 4 and all(sum(row) == pytest.approx(1) for row in tips["scores"])
    length = answer(tmp_path / "serving" / "taxi_trip_length" / "1", eval_file("taxi_trip_length"), "classify",
                    ["trip_miles"])
    assert sorted(length["classes"][0]) == ["long", "medium", "short"] and len(length["classes"]) == 4
    assert all(sum(row) == pytest.approx(1, abs=1e-5) for row in length["scores"])
    fare = answer(tmp_path / "serving" / "taxi_fare" / "1", eval_file("taxi_fare"), "regress", ["fare"])
    assert len(fare["outputs"]) == 4 and all(len(row) == 1 and 0 < row[0] < 200 for row in fare["outputs"])
